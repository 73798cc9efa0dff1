"""Gas limits for trainer calls without an estimateGas round trip per transaction.

Upper bounds calibrated on the project's contracts, per model family: a fixed part, a part per
listed feature index (or dense component), and for the calls that ask the model (refund, report,
predict) a part per index and class, since a multi-class model reads every class's state for every
index. `python -m benchmarks.gas_limits` measures the worst cases on a node against these limits
(benchmarks/results/gas_limits.json). A limit far above the use would waste block space (packing
reserves the limit); one equal to the estimate was seen to be dropped under congestion, hence the
margin.
"""

from __future__ import annotations

MARGIN = 1.15  # the sparse perceptron's parts below are already rounded-up worst cases
MODEL_MARGIN = 1.25  # the other families' parts are fitted to measurements: pad them

# (fixed, per index). Sparse perceptron: add covers a mispredicted sample whose
# weights all sit in still-empty packed slots (a cold read plus a zero-to-nonzero write, 22.1k, per
# index); refund and report cover the first claim of an address (a fresh counter slot).
_SPARSE_PERCEPTRON = {
    "add": (105_000, 26_000),
    "refund": (90_000, 4_000),
    "report": (110_000, 4_000),
    "predict": (40_000, 3_000),  # predict sent as a transaction: a cold read per index
}
# (fixed, per index, per class, per index and class): least-squares fits to the worst cases of
# benchmarks/gas_limits.py (anvil 1.7.1, optimizer on), scaled up until no measurement exceeds them.
# The add writes per index (packed counts, sums or weights) whatever the class count; refund, report
# and predict read each class's counters and its state at every index.
_FAMILIES: dict[str, dict[str, tuple[int, int, int, int]]] = {
    "DensePerceptron": {  # every component is read, and on a mistake written
        "add": (99_000, 9_000, 0, 0),
        "refund": (80_500, 1_500, 0, 0),
        "report": (77_500, 1_500, 0, 0),
        "predict": (26_000, 1_500, 0, 0),
    },
    "NaiveBayes": {
        "add": (105_000, 22_750, 0, 0),
        "refund": (82_250, 250, 3_500, 1_500),
        "report": (79_250, 250, 3_500, 1_500),
        "predict": (27_750, 250, 3_500, 1_500),
    },
    "SparseNearestCentroid": {
        "add": (105_250, 23_000, 0, 0),
        "refund": (82_000, 500, 3_750, 1_250),
        "report": (79_000, 500, 3_750, 1_250),
        "predict": (27_500, 500, 3_750, 1_250),
    },
    "DenseNearestCentroid": {  # predict may stop a class early; the limits assume it never does
        "add": (122_000, 6_500, 0, 0),
        "refund": (82_250, 500, 2_000, 750),
        "report": (82_250, 500, 2_000, 750),
        "predict": (28_250, 500, 2_000, 750),
    },
}
TRANSFER = 21_000
MODEL_FAMILIES = ("SparsePerceptron", *_FAMILIES)


def _limit(call: str, n_indices: int, model: str, n_classes: int) -> int:
    n = max(n_indices, 1)
    if model == "SparsePerceptron":
        fixed, per = _SPARSE_PERCEPTRON[call]
        return int((fixed + per * n) * MARGIN)
    try:
        fixed, per, per_class, per_both = _FAMILIES[model][call]
    except KeyError:
        raise ValueError(f"no gas limits for model contract {model!r}; known: {MODEL_FAMILIES}") from None
    k = max(n_classes, 2)
    return int((fixed + per * n + per_class * k + per_both * n * k) * MODEL_MARGIN)


def add_data_gas(n_indices: int, model: str = "SparsePerceptron", n_classes: int = 2) -> int:
    return _limit("add", n_indices, model, n_classes)


def refund_gas(n_indices: int, model: str = "SparsePerceptron", n_classes: int = 2) -> int:
    return _limit("refund", n_indices, model, n_classes)


def report_gas(n_indices: int, model: str = "SparsePerceptron", n_classes: int = 2) -> int:
    return _limit("report", n_indices, model, n_classes)


def predict_gas(n_indices: int, model: str = "SparsePerceptron", n_classes: int = 2) -> int:
    return _limit("predict", n_indices, model, n_classes)
