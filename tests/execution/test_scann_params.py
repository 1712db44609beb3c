"""ScaNN's "auto" parameters keep recall@100 against the exact top-100 at 0.95 or more, whatever the catalog."""

import math

import numpy as np
import pytest

from ml_pipeline.config.model import ModelConfig
from ml_pipeline.config.scann import ScannParams
from ml_pipeline.serving import scann

K = 100


def clustered(n: int, dim: int, queries: int, seed: int):
    """Products and buyers around shared centres, as trained two-tower embeddings are."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(8, int(math.sqrt(n) / 4)), dim))
    weights = rng.dirichlet(np.ones(len(centres)))

    def around(count):
        return (centres[rng.choice(len(centres), count, p=weights)] + 0.5 * rng.normal(size=(count, dim))).astype(
            np.float32
        )

    return around(n), around(queries), around(queries)


def isotropic(n: int, dim: int, queries: int, seed: int):
    """No structure at all: the hardest case for a tree."""
    rng = np.random.default_rng(seed)
    return tuple(rng.normal(size=(count, dim)).astype(np.float32) for count in (n, queries, queries))


def served_recall(db, tuning_queries, fresh_queries, params="auto"):
    """recall@K of the searcher as the serving model searches (its settings), on queries it was not tuned on."""
    from scann import scann_ops

    module, settings = scann.build(db, K, params, tuning_queries)
    searcher = scann_ops.searcher_from_module(module)
    found = scann.search(searcher, fresh_queries, K, settings.get("num_leaves_to_search"), settings.get("reorder"))
    return scann.recall(found, scann.exact_top_k(db, fresh_queries, K)), settings


@pytest.mark.parametrize("catalog", [clustered, isotropic], ids=["clustered", "isotropic"])
def test_auto_parameters_keep_recall_at_100_at_or_above_the_target(catalog):
    db, tuning, fresh = catalog(30_000, 33, 200, seed=3)
    measured, settings = served_recall(db, tuning, fresh)
    assert measured >= scann.TARGET_RECALL, settings
    assert settings["params"] == "auto" and settings["recall"] >= scann.TARGET_RECALL


def test_a_large_catalog_gets_a_tree_of_about_sqrt_n_leaves_searched_in_part():
    settings = scann.initial(1_000_000, K)
    assert (settings["mode"], settings["num_leaves"]) == ("tree_ah", 1000)
    assert settings["num_leaves_to_search"] == 100 and settings["reorder"] == 1000
    assert scann.initial(500, K)["mode"] == "brute_force" and scann.initial(5_000, K)["mode"] == "ah"


def test_a_clustered_catalog_is_searched_in_part_not_by_brute_force():
    db, tuning, fresh = clustered(30_000, 33, 200, seed=4)
    measured, settings = served_recall(db, tuning, fresh)
    assert settings["mode"] == "tree_ah" and settings["num_leaves_to_search"] < settings["num_leaves"]


def test_fixed_parameters_are_used_as_given_and_their_recall_is_recorded():
    db, tuning, fresh = clustered(30_000, 33, 200, seed=5)
    params = ScannParams(num_leaves=100, num_leaves_to_search=5, reorder=200)
    _, settings = served_recall(db, tuning, fresh, params)
    assert (settings["params"], settings["num_leaves"], settings["num_leaves_to_search"], settings["reorder"]) == (
        "fixed",
        100,
        5,
        200,
    )
    assert 0 <= settings["recall"] <= 1


def test_the_model_config_defaults_to_auto_and_checks_fixed_parameters():
    assert ModelConfig(model_type="retrieval").scann == "auto"
    with pytest.raises(ValueError, match="num_leaves_to_search"):
        ModelConfig(model_type="retrieval", scann={"num_leaves": 10, "num_leaves_to_search": 20})
