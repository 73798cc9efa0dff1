"""Accuracy of every model family on every bundled dataset: the on-chain model (its exact fixed-point
twin, `contracts/twins.py`) against scikit-learn's float equivalent, on the same deterministic split.

The chain's model is built the way a run builds it: the initial model trained off-chain on the
`init` rows (`orchestrator/training.py`), then every agents' row added once, in order, through the
twin's update rule, which is the contract's own integer arithmetic (perceptrons move only on a
mistake; naive Bayes adds counts; nearest centroids move their running means). scikit-learn gets
the same rows (init + agents) in the same input form (present-feature indices as 0/1 columns for the
sparse models, the unit-norm vectors for the dense ones): `Perceptron` (default settings: several
epochs, a fitted intercept), `MultinomialNB(alpha=smoothing)`, `NearestCentroid`. Both are scored
on the held-out test rows. Naive Bayes and nearest centroids do not depend on the order or the
number of passes, so scikit-learn's fit is their exact float equivalent. A perceptron does, and
scikit-learn's several epochs with an intercept are another regime than the chain's one online
pass: for perceptrons a third column, `float_replay_accuracy`, is the chain's own rule in float64
(one pass over the agents' rows in order, from the same initial weights, a move of the learning
rate per present feature on each mistake), so that its difference to the twin is what fixed point
does and nothing else. It is nil except where a score is exactly 0 in integers and 1e-17 in floats
(one-hot data with a constant bias feature, such as tic-tac-toe for the dense perceptron): the
contract then predicts 0, floats predict 1, and one early divergent decision changes the pass. The split is `orchestrator.datasets.split` with the default fractions
(8% init, 20% test) and seed 0.

Run: `python -m benchmarks.accuracy [--seed N] [--output benchmarks/results/accuracy.json]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file too, not only with -m from the project root
    sys.path.insert(0, str(ROOT))

from contracts.twins import twin_from_spec  # noqa: E402
from orchestrator.datasets import Dataset, for_model, load_dataset, split, to_csr  # noqa: E402
from orchestrator.scenario import BINARY_MODELS, MODEL_TYPES, DatasetConfig, ModelConfig  # noqa: E402
from orchestrator.training import train_initial  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "accuracy.json"
F = 10**9

DATASETS: list[tuple[str, DatasetConfig]] = [
    ("synthetic_sparse", DatasetConfig(name="synthetic_sparse")),
    ("breast_cancer", DatasetConfig(name="breast_cancer")),
    ("digits (binary: 5-9 vs 0-4)", DatasetConfig(name="digits")),
    ("digits (10 classes)", DatasetConfig(name="digits", multiclass=True)),
    ("tictactoe", DatasetConfig(name="tictactoe")),
]


def _features(ds: Dataset, rows: np.ndarray, dense: bool) -> Any:
    if dense:
        return np.array([ds.samples[i] for i in rows], dtype=np.float64) / F
    return to_csr([ds.samples[i] for i in rows], ds.n_features)


def sklearn_model(kind: str, cfg: ModelConfig, seed: int) -> Any:
    from sklearn.linear_model import Perceptron
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.neighbors import NearestCentroid

    if kind in BINARY_MODELS:
        return Perceptron(eta0=cfg.learning_rate or 0.5, random_state=seed)
    if kind == "naive_bayes":
        return MultinomialNB(alpha=cfg.smoothing or 1.0)
    return NearestCentroid()


def evaluate(kind: str, raw: Dataset, dcfg: DatasetConfig, seed: int) -> dict[str, Any]:
    cfg = ModelConfig(type=kind)  # type: ignore[arg-type]
    ds = for_model(raw, kind)
    parts = split(ds, dcfg, seed)
    t0 = time.perf_counter()
    twin = twin_from_spec(train_initial(ds, parts.init, cfg, seed))
    for i in parts.agents:  # each agent row once, in the order a run hands them out
        twin.update(ds.samples[i], int(ds.labels[i]))
    test_x = [ds.samples[i] for i in parts.test]
    y_test = ds.labels[parts.test]
    twin_acc = float((twin.predict(test_x) == y_test).mean())
    twin_s = time.perf_counter() - t0

    dense = kind.startswith("dense_")
    train = np.concatenate([parts.init, parts.agents])
    clf = sklearn_model(kind, cfg, seed)
    x_train, x_test = _features(ds, train, dense), _features(ds, parts.test, dense)
    if kind == "sparse_nearest_centroid":  # NearestCentroid wants dense arrays
        x_train, x_test = x_train.toarray(), x_test.toarray()
    clf.fit(x_train, ds.labels[train])
    sk_acc = float((clf.predict(x_test) == y_test).mean())
    replay = _float_replay(cfg, ds, parts, dense, seed, x_test, y_test) if kind in BINARY_MODELS else None
    return {"model": kind, "twin_accuracy": round(twin_acc, 4), "sklearn_accuracy": round(sk_acc, 4),
            "difference": round(twin_acc - sk_acc, 4),
            "float_replay_accuracy": round(replay, 4) if replay is not None else None,
            "difference_float_replay": round(twin_acc - replay, 4) if replay is not None else None,
            "train": int(train.size), "test": int(parts.test.size), "twin_seconds": round(twin_s, 2)}


def _float_replay(cfg: ModelConfig, ds: Dataset, parts: Any, dense: bool, seed: int, x_test: Any,
                  y_test: np.ndarray) -> float:
    """The contract's perceptron rule in float64: same start, same rows, same order, one pass."""
    spec = train_initial(ds, parts.init, cfg, seed)
    w = np.array(spec.weights, dtype=np.float64) / F
    b = spec.intercept / F
    lr = float(cfg.learning_rate or 0.5)
    x = _features(ds, parts.agents, dense)
    rows = x if dense else [x.getrow(k) for k in range(x.shape[0])]
    for row, label in zip(rows, ds.labels[parts.agents]):
        vec = row if dense else row.toarray().ravel()
        if int(float(vec @ w) + b > 0) != int(label):
            w += (lr if label == 1 else -lr) * vec
    scores = (x_test @ w) + b
    return float(((np.asarray(scores).ravel() > 0).astype(int) == y_test).mean())


def run(seed: int = 0) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for label, dcfg in DATASETS:
        raw = load_dataset(dcfg, seed)
        for kind in MODEL_TYPES:
            if raw.n_classes > 2 and kind in BINARY_MODELS:
                continue  # a perceptron takes two classes
            row = {"dataset": label, "samples": len(raw), "features": raw.n_features, "classes": raw.n_classes}
            rows.append(row | evaluate(kind, raw, dcfg, seed))
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    head = ("| dataset | samples | features | classes | model | on-chain twin | scikit-learn | twin - sklearn "
            "| float replay of the chain's rule | twin - that |\n|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        replay = r.get("float_replay_accuracy")
        extra = (f"{replay:.3f} | {r['difference_float_replay']:+.3f}" if replay is not None else "(same fit) | ")
        lines.append(f"| {r['dataset']} | {r['samples']} | {r['features']} | {r['classes']} | {r['model']} | "
                     f"{r['twin_accuracy']:.3f} | {r['sklearn_accuracy']:.3f} | {r['difference']:+.3f} | {extra} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help=f"default: {DEFAULT_OUTPUT} (--quick: a "
                        "temporary file)")
    parser.add_argument("--quick", action="store_true",
                        help="as `make bench BENCH_ARGS=--quick` asks: the same tables (off-chain, already quick), "
                             "written to a temporary file so the recorded result is kept")
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = Path(tempfile.mkdtemp(prefix="dcai-bench-")) / "accuracy.json" if args.quick else DEFAULT_OUTPUT
    # NearestCentroid warns about features constant within a class (0/1 pixels): expected here.
    warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
    rows = run(args.seed)
    print(format_table(rows))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"seed": args.seed, "rows": rows}, indent=1) + "\n")
    print(f"\nwrote {len(rows)} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
