"""Gas limits for trainer calls without an estimateGas round trip per transaction.

Upper bounds calibrated on the project's contracts (tests/test_gas_limits.py checks that the gas
really used stays below them): a fixed part plus a part per listed feature index. A limit far above
the use would waste block space (packing reserves the limit); one equal to the estimate was seen to
be dropped under congestion, hence the margin.
"""

from __future__ import annotations

MARGIN = 1.15

# (fixed, per index): add covers a mispredicted sample whose weights all sit in still-empty packed
# slots (a cold read plus a zero-to-nonzero write, 22.1k, per index); refund and report cover the
# first claim of an address (a fresh counter slot).
_ADD = (105_000, 26_000)
_REFUND = (90_000, 4_000)
_REPORT = (110_000, 4_000)
_PREDICT = (40_000, 3_000)  # predict sent as a transaction: a cold read per index
TRANSFER = 21_000


def _limit(parts: tuple[int, int], n_indices: int) -> int:
    fixed, per = parts
    return int((fixed + per * max(n_indices, 1)) * MARGIN)


def add_data_gas(n_indices: int) -> int:
    return _limit(_ADD, n_indices)


def refund_gas(n_indices: int) -> int:
    return _limit(_REFUND, n_indices)


def report_gas(n_indices: int) -> int:
    return _limit(_REPORT, n_indices)


def predict_gas(n_indices: int) -> int:
    return _limit(_PREDICT, n_indices)
