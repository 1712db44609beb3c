"""The serving endpoint under attack: oversized, malformed, stalled, absurd and unauthenticated requests.

Each test sends raw HTTP to a real ``ServingServer`` on a loopback socket. The
model is a stand-in that records its calls (a real SavedModel is served in
``test_evaluator_pusher.py``): every refusal here must happen before the model
runs, and most before the body is read.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from ml_pipeline.serving.requests import DEFAULT_MAX_INSTANCES, ServerOptions

TOKEN = "s3cret-serving-token"
OVERSIZED = 49_000_000  # the size of the request that once took the server to 8.4 GiB
PREDICT = "/v1/models/recs:predict"


class Spec:
    def __init__(self, dtype: str):
        self.dtype = SimpleNamespace(name=dtype)


class FakeRecommender:
    """Stands in for a loaded SavedModel: top-K of a buyer id, a price and a timestamp; records each call."""

    k = 5
    config = {"signatures": {}, "model_type": "retrieval", "retrieval": "brute_force", "catalog_size": 5}

    def __init__(self):
        self.signatures = {"serving_default": SimpleNamespace(structured_outputs={"product_ids": 0, "scores": 0})}
        self.calls: list[int] = []

    def input_specs(self, signature="serving_default"):
        return {"buyer_id": Spec("string"), "price": Spec("float32"), "timestamp": Spec("int64")}

    def predict_instances(self, instances, signature):
        self.calls.append(len(instances))
        return [{"product_ids": ["p1", "p2"], "scores": [0.9, 0.1]} for _ in instances]


class FakeModel:
    load_seconds, buyers = 0.0, None

    def __init__(self, entry):
        self.entry, self.name, self.version = entry, entry.name, entry.version
        self.recommender = FakeRecommender()


def instance(**values):
    return {"buyer_id": "b1", "price": 9.5, "timestamp": 1_700_000_000, **values}


@pytest.fixture
def endpoint(serving_endpoint):
    return serving_endpoint({"recs": {"path": "/fake", "version": 3}}, loader=FakeModel)


@pytest.fixture
def guarded(serving_endpoint):
    """The endpoint with ``SERVING_TOKEN`` set."""
    return serving_endpoint(
        {"recs": {"path": "/fake", "version": 3}}, loader=FakeModel, options=ServerOptions(token=TOKEN)
    )


def model_calls(endpoint) -> list[int]:
    return endpoint.store.get("recs").recommender.calls


def refused(answer, status: int, field: str) -> str:
    """The answer's message, after checking it is ``status`` in the endpoint's error shape naming ``field``."""
    assert answer.status == status, answer
    assert set(answer.json) == {"error", "errors"}, answer.json
    assert answer.json["errors"] == [{"field": field, "message": answer.json["error"]}]
    return answer.json["error"]


# -- the body's size ---------------------------------------------------------------------
def test_an_oversized_body_is_refused_413_before_a_byte_of_it_is_read(endpoint):
    # Only the headers are sent: a server that waited for the body would never answer.
    answer = endpoint.send([f"POST {PREDICT} HTTP/1.1", "Host: x", f"Content-Length: {OVERSIZED}"])
    assert "at most 4,194,304" in refused(answer, 413, "Content-Length")
    assert answer.headers["connection"] == "close" and answer.closed_by_server()
    assert model_calls(endpoint) == []


def test_an_oversized_body_sent_anyway_still_reads_its_413_not_a_reset(endpoint):
    body = b"[" + b"0," * (5 * 1024 * 1024 // 2) + b"0]"
    answer = endpoint.send([f"POST {PREDICT} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}"], body)
    refused(answer, 413, "Content-Length")
    assert answer.closed_by_server()


def test_an_oversized_body_announced_with_expect_100_continue_gets_413_instead_of_the_go_ahead(endpoint):
    answer = endpoint.send(
        [f"POST {PREDICT} HTTP/1.1", "Host: x", f"Content-Length: {OVERSIZED}", "Expect: 100-continue"]
    )
    refused(answer, 413, "Content-Length")
    assert answer.closed_by_server()


def test_the_body_limit_is_the_configured_one(serving_endpoint):
    small = serving_endpoint(
        {"recs": {"path": "/fake", "version": 3}}, loader=FakeModel, options=ServerOptions(max_body_bytes=100)
    )
    body = json.dumps({"instances": [instance()] * 3}).encode()
    assert len(body) > 100
    refused(small.call("POST", PREDICT, body), 413, "Content-Length")
    assert small.call("POST", PREDICT, {"instances": [instance()]}).status == 200


# -- Content-Length ------------------------------------------------------------------------
@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "12 34", "+5", "0x10", "99999999999999999999999"])
def test_a_content_length_that_is_not_a_number_of_bytes_is_refused_400(endpoint, length):
    answer = endpoint.send([f"POST {PREDICT} HTTP/1.1", "Host: x", f"Content-Length: {length}"], b"{}")
    assert "Content-Length must be a number of bytes" in refused(answer, 400, "Content-Length")
    assert answer.closed_by_server()


def test_conflicting_content_lengths_are_refused_400(endpoint):
    answer = endpoint.send([f"POST {PREDICT} HTTP/1.1", "Host: x", "Content-Length: 2", "Content-Length: 40"], b"{}")
    assert refused(answer, 400, "Content-Length") == "conflicting Content-Length headers"
    assert answer.closed_by_server()


def test_a_body_without_a_content_length_is_refused_411(endpoint):
    answer = endpoint.send([f"POST {PREDICT} HTTP/1.1", "Host: x"])
    refused(answer, 411, "Content-Length")


def test_a_chunked_body_is_refused_411_and_never_read(endpoint):
    chunk = json.dumps({"instances": [instance()]}).encode()
    answer = endpoint.send(
        [f"POST {PREDICT} HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"],
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk),
    )
    assert "chunked" in refused(answer, 411, "Transfer-Encoding")
    assert answer.closed_by_server()
    assert model_calls(endpoint) == []


# -- slow clients -----------------------------------------------------------------------------
def test_a_client_that_stalls_mid_body_is_answered_408_and_disconnected(serving_endpoint):
    patient = serving_endpoint(
        {"recs": {"path": "/fake", "version": 3}}, loader=FakeModel, options=ServerOptions(read_timeout=0.3)
    )
    answer = patient.send([f"POST {PREDICT} HTTP/1.1", "Host: x", "Content-Length: 100"], b'{"instances"')
    refused(answer, 408, "body")
    assert answer.closed_by_server()


def test_a_client_that_stalls_mid_headers_is_disconnected(serving_endpoint):
    patient = serving_endpoint({}, options=ServerOptions(read_timeout=0.3))
    sock = patient.connect()
    sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n".encode())  # and never the blank line
    sock.settimeout(10)
    assert sock.recv(1) == b""  # the server hung up: its thread is free


# -- the body's content -------------------------------------------------------------------------
def test_too_many_instances_are_refused_400_before_the_model_runs(endpoint):
    answer = endpoint.call("POST", PREDICT, {"instances": [instance()] * (DEFAULT_MAX_INSTANCES + 1)})
    assert "1,001 rows; at most 1,000" in refused(answer, 400, "instances")
    answer = endpoint.call("POST", PREDICT, {"inputs": {"buyer_id": ["b"] * (DEFAULT_MAX_INSTANCES + 1)}})
    refused(answer, 400, "inputs.buyer_id")
    assert model_calls(endpoint) == []
    assert endpoint.call("POST", PREDICT, {"instances": [instance()] * DEFAULT_MAX_INSTANCES}).status == 200


def test_the_instance_limit_is_the_configured_one(serving_endpoint):
    few = serving_endpoint(
        {"recs": {"path": "/fake", "version": 3}}, loader=FakeModel, options=ServerOptions(max_instances=2)
    )
    refused(few.call("POST", PREDICT, {"instances": [instance()] * 3}), 400, "instances")
    assert few.call("POST", PREDICT, {"instances": [instance()] * 2}).status == 200


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"instances": [{"buyer_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"],
)
def test_json_nested_100000_levels_is_refused_400(endpoint, body):
    answer = endpoint.call("POST", PREDICT, body)
    assert refused(answer, 400, "body") == "the body is nested too deeply"
    assert endpoint.call("GET", "/healthz").status == 200  # and the server is fine


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_numbers(endpoint, constant):
    body = b'{"instances": [{"buyer_id": "b1", "price": %s, "timestamp": 1}]}' % constant.encode()
    assert f"{constant} is not a JSON number" in refused(endpoint.call("POST", PREDICT, body), 400, "body")
    assert model_calls(endpoint) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"instances": [instance(timestamp=1e300)]}, "instances[0].timestamp"),
        ({"instances": [instance(), instance(timestamp=-5)]}, "instances[1].timestamp"),
        ({"instances": [instance(timestamp=10**30)]}, "instances[0].timestamp"),
        ({"instances": [instance(timestamp="soon")]}, "instances[0].timestamp"),
        ({"instances": [instance(timestamp=[1, 2])]}, "instances[0].timestamp"),
        ({"instances": [instance(price=1e39)]}, "instances[0].price"),
        ({"instances": [instance(price="cheap")]}, "instances[0].price"),
        ({"instances": [instance(buyer_id={"nested": "object"})]}, "instances[0].buyer_id"),
        ({"inputs": {"buyer_id": ["b1"], "price": [1.0], "timestamp": [1e300]}}, "inputs.timestamp[0]"),
    ],
)
def test_absurd_input_values_in_predict_are_refused_400_naming_the_input(endpoint, body, field):
    refused(endpoint.call("POST", PREDICT, body), 400, field)
    assert model_calls(endpoint) == []


# -- /recommend's parameters -----------------------------------------------------------------------
@pytest.mark.parametrize("k", ["1e300", "-1", "0", "nan", "abc", "1.5", "9999999999", "5" * 5000])
def test_an_absurd_k_is_refused_400_naming_k(endpoint, k):
    refused(endpoint.call("GET", f"/recommend?buyer_id=b1&k={k}"), 400, "k")


@pytest.mark.parametrize("at", ["1e300", "-1", "nan", "inf", "-inf", "tomorrow", "1" * 5000, "253402300800"])
def test_an_absurd_at_is_refused_400_naming_at(endpoint, at):
    assert "Unix seconds between 0 and" in refused(endpoint.call("GET", f"/recommend?buyer_id=b1&at={at}"), 400, "at")


# -- a well-formed request still works -----------------------------------------------------------------
def test_well_formed_requests_are_answered_on_one_kept_alive_connection(endpoint):
    first = endpoint.call("POST", PREDICT, {"instances": [instance(), instance(buyer_id="b2", timestamp="1700000000")]})
    assert first.status == 200 and first.json == {
        "predictions": [{"product_ids": ["p1", "p2"], "scores": [0.9, 0.1]}] * 2
    }
    assert "connection" not in first.headers
    second = endpoint.call("GET", "/v1/models/recs", sock=first.sock)  # the same connection, still open
    assert second.status == 200 and second.json["model_version_status"][0]["state"] == "AVAILABLE"
    assert model_calls(endpoint) == [2]


def test_the_standard_librarys_own_refusals_answer_json(endpoint):
    flood = endpoint.send(["GET /healthz HTTP/1.1"] + [f"X-Flood-{i}: 1" for i in range(101)])
    assert flood.status == 431 and set(flood.json) == {"error"} and flood.closed_by_server()
    put = endpoint.call("PUT", PREDICT, {"instances": [instance()]})
    assert put.status == 405 and put.headers["allow"] == "POST"


# -- the token -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models/recs"),
        ("GET", "/v1/models/recs/metadata"),
        ("POST", PREDICT),
        ("GET", "/recommend?buyer_id=b1"),
        ("GET", "/no/such/route"),
    ],
)
def test_without_the_token_every_route_but_healthz_answers_401(guarded, method, path):
    answer = guarded.call(method, path, {"instances": [instance()]} if method == "POST" else None)
    assert "Authorization: Bearer" in refused(answer, 401, "Authorization")
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert model_calls(guarded) == []


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer", f"Bearer  {TOKEN.upper()}"],
)
def test_a_wrong_token_answers_401(guarded, authorization):
    answer = guarded.send(["GET /v1/models/recs HTTP/1.1", "Host: x", f"Authorization: {authorization}"])
    assert refused(answer, 401, "Authorization") == "the bearer token is not valid"


def test_the_right_token_answers_200(guarded):
    assert guarded.call("GET", "/v1/models/recs", token=TOKEN).status == 200
    assert guarded.call("POST", PREDICT, {"instances": [instance()]}, token=TOKEN).status == 200
    lowercase = guarded.send(["GET /v1/models/recs HTTP/1.1", "Host: x", f"Authorization: bearer {TOKEN}"])
    assert lowercase.status == 200  # the scheme is case-insensitive, the token is not
    assert model_calls(guarded) == [1]


def test_healthz_is_open_but_tells_only_the_tokens_holder_what_is_served(guarded):
    assert guarded.call("GET", "/healthz").json == {"status": "ok"}
    full = guarded.call("GET", "/healthz", token=TOKEN).json
    assert full["models"]["recs"]["version"] == 3
    assert full["options"] == {"auth": True, "max_body_bytes": 4 * 1024 * 1024, "max_instances": 1000}


def test_an_unauthenticated_oversized_body_is_refused_401_unread(guarded):
    answer = guarded.send([f"POST {PREDICT} HTTP/1.1", "Host: x", f"Content-Length: {OVERSIZED}"])
    refused(answer, 401, "Authorization")
    assert answer.closed_by_server()


# -- the options -----------------------------------------------------------------------------------------
def test_the_options_come_from_the_environment_and_nonsense_is_refused():
    options = ServerOptions.from_env(
        {"SERVING_MAX_BODY_BYTES": "1024", "SERVING_MAX_INSTANCES": "10", "SERVING_TOKEN": " t0ken "}
    )
    assert (options.max_body_bytes, options.max_instances, options.token) == (1024, 10, "t0ken")
    assert "t0ken" not in repr(options)
    assert ServerOptions.from_env({}) == ServerOptions()
    for name, value in (("SERVING_MAX_BODY_BYTES", "4MiB"), ("SERVING_MAX_INSTANCES", "0")):
        with pytest.raises(ValueError, match=name):
            ServerOptions.from_env({name: value})
