"""One slow request does not hold up the others: each connection has its own thread, and nothing the
requests share (the model store, a loaded model) is locked while a model runs."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from tests.execution.test_serving_server import FakeModel, FakeRecommender, instance

PREDICT = "/v1/models/recs:predict"


class SlowForOneBuyer(FakeRecommender):
    """Answers at once, except for buyer "slow", whose answer waits until the test releases it."""

    def __init__(self):
        super().__init__()
        self.release, self.slow_started = threading.Event(), threading.Event()

    def predict_instances(self, instances, signature):
        if any(row.get("buyer_id") == "slow" for row in instances):
            self.slow_started.set()
            assert self.release.wait(timeout=30), "the test never released the slow request"
        return super().predict_instances(instances, signature)


class SlowModel(FakeModel):
    def __init__(self, entry):
        super().__init__(entry)
        self.recommender = SlowForOneBuyer()


@pytest.fixture
def endpoint(serving_endpoint):
    return serving_endpoint({"recs": {"path": "/fake", "version": 1}}, loader=SlowModel)


def test_requests_are_answered_while_a_slow_one_is_in_flight(endpoint):
    model = endpoint.store.get("recs").recommender
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(endpoint.call, "POST", PREDICT, {"instances": [instance(buyer_id="slow")]})
        assert model.slow_started.wait(timeout=30)
        try:
            quick = [endpoint.call("POST", PREDICT, {"instances": [instance()]}) for _ in range(3)]
            health = endpoint.call("GET", "/healthz")
            assert not slow.done()  # all of these were answered while the slow one was still running
        finally:
            model.release.set()
        assert [answer.status for answer in quick] == [200, 200, 200] and health.status == 200
        assert slow.result(timeout=30).status == 200


def test_the_model_store_is_not_held_while_a_model_runs(endpoint):
    model = endpoint.store.get("recs").recommender
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(endpoint.call, "POST", PREDICT, {"instances": [instance(buyer_id="slow")]})
        assert model.slow_started.wait(timeout=30)
        try:
            got = SimpleNamespace(summary=None)
            reader = threading.Thread(target=lambda: setattr(got, "summary", endpoint.store.summary()))
            reader.start()
            reader.join(timeout=10)
            assert got.summary is not None and got.summary["recs"]["state"] == "AVAILABLE"
        finally:
            model.release.set()
        slow.result(timeout=30)
