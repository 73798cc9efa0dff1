"""The gas benchmark's measurement reproduces a row of benchmarks/results/gas.json and stays under
the target ratio to the reference (shared/spec/gas-benchmark.md)."""

from __future__ import annotations

import json

import pytest

from benchmarks import gas
from contracts.signing import dev_accounts

ROWS = json.loads(gas.DEFAULT_OUTPUT.read_text()) if gas.DEFAULT_OUTPUT.exists() else []


def test_protocol_inputs():
    assert gas.sparse_input(10) == [2, 102, 202, 302, 402, 502, 602, 702, 802, 902]
    assert gas.sparse_input(10, odd=True)[0] == 3
    assert len(set(gas.sparse_input(60))) == 60 and max(gas.sparse_input(60)) < 1000
    x = gas.dense_input(8)
    assert abs(sum(v * v for v in x) - 10**18) < 10**11


def test_results_file_covers_every_cell():
    assert ROWS, f"missing {gas.DEFAULT_OUTPUT}: run `python -m benchmarks.gas`"
    cells = {(r["model"], r["input"], r["operation"]) for r in ROWS}
    for (model, inp) in gas.REFERENCE:
        for op in gas.OPERATIONS:
            assert (model, inp, op) in cells
    for (model, size) in gas.REFERENCE_DEPLOYMENT:
        assert (model, size, "full deployment") in cells
    for r in ROWS:
        assert r["ratio"] == round(r["gas"] / r["reference_gas"], 3)
    table = gas.format_table(ROWS)
    assert "| sparse perceptron | s=10 | 1 |" in table


@pytest.mark.parametrize(("model", "inp"), [("sparse perceptron", "s=10"), ("naive Bayes", "s=10")])
async def test_measurement_reproduces_a_row_under_target(client, chain_id, compiled, model, inp):
    case = next(c for c in gas.cases() if (c.model, c.input) == (model, inp))
    block = await client.get_block("latest")
    bench = gas.Bench(client, compiled, dev_accounts(4), chain_id, int(block["gasLimit"], 16))
    result = await bench.measure(case)
    rows = {r["operation"]: r for r in gas.rows_of([result])}
    recorded = {r["operation"]: r for r in ROWS if (r["model"], r["input"]) == (model, inp)}
    for op in gas.OPERATIONS:
        assert rows[op]["ratio"] <= gas.TARGET_OPERATIONS, (op, rows[op])
        # the same protocol on the same contracts gives the same gas; a change means gas.json is stale
        assert rows[op]["gas"] == pytest.approx(recorded[op]["gas"], rel=0.01), \
            f"{op}: measured {rows[op]['gas']}, recorded {recorded[op]['gas']}: rerun `python -m benchmarks.gas`"
    deployment = rows["full deployment"]
    assert deployment["ratio"] <= gas.TARGET_DEPLOYMENT
