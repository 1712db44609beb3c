"""ScaNN's search parameters, as a model config may fix them (``scann``; ``"auto"`` by default).

With ``"auto"`` the Pusher chooses them from the catalog's size and checks
them on the catalog itself (:func:`ml_pipeline.serving.scann.tune`): about
√N leaves, searched and re-scored as widely as it takes for recall@K against
the exact top-K to reach the target (0.95). Fixed values are used as given.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from ml_pipeline.config.dataset import StrictModel
from ml_pipeline.errors import UNION_FIELDS, UNION_TAGS


class ScannParams(StrictModel):
    """Fixed ScaNN parameters (a tree of ``num_leaves`` partitions, anisotropic hashing, exact re-scoring)."""

    num_leaves: int | None = Field(
        default=None, ge=2, le=100_000, description="Partitions of the catalog; null: no tree (every product hashed)"
    )
    num_leaves_to_search: int | None = Field(default=None, ge=1, le=100_000, description="Partitions searched")
    reorder: int = Field(default=1000, ge=1, le=100_000, description="Candidates re-scored exactly")
    dims_per_block: int = Field(default=2, ge=1, le=8)
    anisotropic_quantization_threshold: float = Field(default=0.2, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _leaves(self) -> ScannParams:
        if (self.num_leaves is None) != (self.num_leaves_to_search is None):
            raise ValueError("num_leaves and num_leaves_to_search go together (both, or neither for no tree)")
        if self.num_leaves is not None and self.num_leaves_to_search > self.num_leaves:
            raise ValueError("num_leaves_to_search: at most num_leaves")
        return self


# "auto" or fixed parameters; tagged, so an error names ``scann.reorder``, not pydantic's union member.
ScannChoice = Annotated[
    Annotated[Literal["auto"], Tag("auto")] | Annotated[ScannParams, Tag("params")],
    Discriminator(lambda value: "auto" if isinstance(value, str) else "params"),
]
UNION_TAGS.update({"auto", "params"})
UNION_FIELDS.add("scann")
