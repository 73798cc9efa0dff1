"""Train the initial model off-chain and express it in the contracts' fixed point.

Each model family trains its own (`contracts.families`, `ModelFamily.train`), producing the spec
`contracts.deploy.deploy_system` deploys. The samples are already in the model's input form
(`datasets.for_model`): present-feature indices for the sparse models, unit-norm fixed-point
vectors for the dense ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from contracts.families import get

from .datasets import Dataset
from .scenario import ModelConfig


def train_initial(ds: Dataset, rows: np.ndarray, cfg: ModelConfig, seed: int) -> Any:
    """The initial model of `cfg.type` trained on `rows` of `ds` (in the model's input form)."""
    return get(cfg.type).train(ds, rows, cfg.family_options(), seed)
