"""Gas limits for agents' calls without an estimateGas round trip per transaction.

Each model family holds its calibrated table (`contracts.families`, `ModelFamily.gas`): per
mechanism (stakeable, points, prediction_market) and operation, a fixed part, a part per listed
feature index (or dense component), and for the calls that ask the model a part per class and per
index and class. `python -m benchmarks.gas_limits` measures the worst case of every cell on a node
against these limits (benchmarks/results/gas_limits.json). A limit far above the use would waste
block space (packing reserves the limit); one equal to the estimate was seen to be dropped under
congestion, hence the margin.

`model` is a family's name or its contract's; without `mechanism` a limit is the largest over the
family's calibrated mechanisms, which covers whichever the run uses.
"""

from __future__ import annotations

from contracts.families import get, names

TRANSFER = 21_000


def _family_limit(operation: str, n_indices: int, model: str, n_classes: int, mechanism: str | None) -> int:
    try:
        family = get(model)
    except ValueError:
        raise ValueError(f"no gas limits for model {model!r}; known: {names()}") from None
    return family.gas_limit(operation, n_indices, n_classes, mechanism)


def add_data_gas(n_indices: int, model: str = "SparsePerceptron", n_classes: int = 2,
                 mechanism: str | None = None) -> int:
    return _family_limit("add", n_indices, model, n_classes, mechanism)


def refund_gas(n_indices: int, model: str = "SparsePerceptron", n_classes: int = 2,
               mechanism: str | None = None) -> int:
    return _family_limit("refund", n_indices, model, n_classes, mechanism)


def report_gas(n_indices: int, model: str = "SparsePerceptron", n_classes: int = 2,
               mechanism: str | None = None) -> int:
    return _family_limit("report", n_indices, model, n_classes, mechanism)


def predict_gas(n_indices: int, model: str = "SparsePerceptron", n_classes: int = 2,
                mechanism: str | None = None) -> int:
    return _family_limit("predict", n_indices, model, n_classes, mechanism)


def collect_gas(model: str = "SparsePerceptron") -> int:
    """The prediction market's `collect` (a withdrawal: does not depend on the input)."""
    return _family_limit("collect", 0, model, 2, "prediction_market")
