"""Every malformed input of the corpora goes through the real `dcai` entry point and comes back as one
precise error: exit 2, the file (and line and field where there is one), the expected words, no
traceback. How long each refusal takes and how much memory it uses (the issue's 2 s and 500 MB) is
shown by `benchmarks/bad_inputs.py`, not asserted here, where a loaded machine would make it flaky.

Corpora (each file says, or its folder's expectations.json says, what its error must be):
* tests/scenarios_bad/   scenario files the schema refuses (syntax, types, ranges, cross-field, YAML
                         limits: alias bombs, nesting, size)
* tests/prechecks_bad/   valid scenarios that the world refuses: dataset files (missing, a folder,
                         binary, not UTF-8, malformed, too few rows for the agents), the output folder,
                         policies and plugins that fail to import (tests/plugins_bad/)
* tests/sweeps_bad/      sweep files (`dcai validate` recognises them)
* tests/datasets_bad/    dataset files, each wrapped in a scenario that names it
* CLI_ARGUMENTS below    command lines
tests/models_bad/ (model files, which no command reads) is checked by tests/test_bad_files.py.

Most cases run in-process (`main([...])`, the function behind the `dcai` script) for speed; a few go
through a real subprocess, which also bounds their memory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SCENARIOS = sorted((TESTS / "scenarios_bad").glob("*.yaml")) + sorted((TESTS / "prechecks_bad").glob("*.yaml"))
SWEEPS_DIR = TESTS / "sweeps_bad"
SWEEPS = sorted(SWEEPS_DIR.glob("*.yaml"))
DATASETS_DIR = TESTS / "datasets_bad"
DATASETS = sorted(p for p in DATASETS_DIR.iterdir() if p.name != "expectations.json")
MODELS = sorted(p for p in (TESTS / "models_bad").iterdir() if p.name != "expectations.json")

_EXPECT = re.compile(r"#\s*expect:\s*(?P<loc>\S+)\s*@\s*(?P<line>\d+|-)\s*$")
_SAYS = re.compile(r"#\s*says:\s*(?P<text>.+?)\s*$")

# (arguments, a fragment of the one-line error)
CLI_ARGUMENTS: list[tuple[list[str], str]] = [
    (["run", "scenarios/quickstart.yaml", "--seed", "-1"], "argument --seed: -1 is outside 0 .. 4294967295"),
    (["run", "scenarios/quickstart.yaml", "--seed", "4294967296"], "is outside 0 .. 4294967295"),
    (["run", "scenarios/quickstart.yaml", "--seed", "abc"], "argument --seed: 'abc' is not a whole number"),
    (["run", "scenarios/quickstart.yaml", "--run-id", "../x"], "argument --run-id: run id '../x' must be"),
    (["run", "scenarios/quickstart.yaml", "--run-id", ".."], "is not usable as a folder name"),
    (["run", "scenarios/quickstart.yaml", "--run-id", "a/b"], "argument --run-id"),
    (["run", "scenarios/quickstart.yaml", "--out", "pyproject.toml"], "--out 'pyproject.toml' is a file"),
    (["run", "scenarios/quickstart.yaml", "--out", "pyproject.toml/x"], "cannot be created"),
    (["run"], "the following arguments are required: scenario"),
    (["run", "tests/no_such_scenario.yaml"], "tests/no_such_scenario.yaml: file not found"),
    (["validate"], "the following arguments are required: scenario"),
    (["validate", "tests/prechecks_bad/data"], "is a directory, not a scenario file"),
    (["validate", "tests/prechecks_bad/data/binary.csv"], "a binary file, not a scenario file"),
    (["validate", "tests/plugins_bad/not_a_policy.py"], "YAML syntax error"),
    (["validate", "/dev/null"], "the file has no content"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["model", "tests", "--at-block", "-3"], "argument --at-block: -3: block numbers start at 0"),
    (["model", "tests", "--at-block", "x"], "argument --at-block: 'x' is not a block number"),
    (["model", "tests/no_such_run", "--at-block", "3"], "no_such_run"),
    (["replay", "tests/prechecks_bad"], "no replay bundle here"),
    (["report", "tests/no_such_run"], "is not a folder"),
    (["sweep", "tests/no_such_sweep.yaml"], "tests/no_such_sweep.yaml: file not found"),
    (["run", "scenarios/quickstart.yaml", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
]


def _header(path: Path) -> tuple[str, int | None, str]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    match = _EXPECT.match(lines[0])
    says = _SAYS.match(lines[1])
    assert match and says, f"{path.name}: needs '# expect: <location> @ <line>' and '# says: ...' lines"
    return ("" if match["loc"] == "-" else match["loc"]), (None if match["line"] == "-" else int(match["line"])), \
        says["text"]


def _dcai(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def _refused_cleanly(code: int, err: str) -> None:
    assert code == 2, err
    assert err.strip(), "no message"
    assert "Traceback" not in err and 'File "' not in err, err


@pytest.fixture(scope="module", autouse=True)
def _imports_done() -> None:
    # The first command of a process imports the stack (pydantic models, policies): a clean state for
    # what each refusal prints, paid once.
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert main(["validate", "scenarios/quickstart.yaml"]) == 0
    finally:
        os.chdir(cwd)


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # Paths in the corpora are relative to the repository, as a user's are to their working directory.
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(TESTS))  # the plugin modules of tests/plugins_bad


def test_the_corpus_is_large_enough() -> None:
    total = len(SCENARIOS) + len(SWEEPS) + len(DATASETS) + len(MODELS) + len(CLI_ARGUMENTS)
    assert total >= 80 + 100, total  # the issue asks for 80; more are here
    assert len(SWEEPS) >= 15 and len(CLI_ARGUMENTS) >= 15


@pytest.mark.parametrize("path", SCENARIOS, ids=[f"{p.parent.name}/{p.stem}" for p in SCENARIOS])
def test_bad_scenario_through_the_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    location, line, says = _header(path)
    shown = str(path.relative_to(ROOT))
    code, err = _dcai(capsys, "validate", shown)
    _refused_cleanly(code, err)
    prefix = f"{shown}:{line}:" if line is not None else f"{shown}:"
    hits = [text for text in err.splitlines()
            if text.startswith(prefix) and (f": {location}: " in text if location else True) and says in text]
    assert hits, f"expected {prefix} {location}: ...{says}..., got:\n{err}"
    for text in err.splitlines():
        assert len(text) < 700, "a long value was echoed whole"


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_bad_sweep_through_the_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect = json.loads((SWEEPS_DIR / "expectations.json").read_text())[path.name]
    shown = str(path.relative_to(ROOT))
    code, err = _dcai(capsys, "validate", shown)
    _refused_cleanly(code, err)
    named = str(Path(shown).parent / expect["file"]) if "file" in expect else shown
    prefix = f"{named}:{expect['line']}:" if expect["line"] is not None else f"{named}:"
    assert err.startswith(prefix), err
    assert expect["says"] in err, err


def test_every_sweep_fixture_has_an_expectation() -> None:
    expectations = json.loads((SWEEPS_DIR / "expectations.json").read_text())
    assert {p.name for p in SWEEPS} == {k for k in expectations if not k.startswith("_")}


@pytest.mark.parametrize("path", DATASETS, ids=[p.name for p in DATASETS])
def test_bad_dataset_named_by_a_scenario(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect = json.loads((DATASETS_DIR / "expectations.json").read_text())[path.name]
    config = {"name": "csv" if path.suffix == ".csv" else "libsvm", "path": str(path), **expect.get("config", {})}
    scenario = tmp_path / "uses_bad_data.yaml"
    scenario.write_text("name: bad-data\n"
                        f"dataset: {json.dumps(config)}\n"
                        "agents:\n  - {policy: honest, count: 2}\nschedule: {duration: 50}\n")
    code, err = _dcai(capsys, "validate", str(scenario))
    _refused_cleanly(code, err)
    # The scenario's dataset line, then the data file's own position and message.
    assert err.startswith(f"{scenario}:2:"), err
    assert f"dataset.path: {path}" in err or f"dataset.path: dataset file {str(path)!r}" in err, err
    assert expect["says"] in err, err


@pytest.mark.parametrize("argv,says", CLI_ARGUMENTS, ids=[" ".join(a)[:60] for a, _ in CLI_ARGUMENTS])
def test_bad_command_line(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _dcai(capsys, *argv)
    _refused_cleanly(code, err)
    assert says in err, err
    assert len(err.strip().splitlines()) == 1, err  # one line, not argparse's usage block


# --------------------------------------------------------------------------------------------------
# Through a real process: the installed entry point's behaviour and memory


# Runs `dcai` as `python -m orchestrator.cli` does, then writes the process's own peak memory (VmHWM:
# the high-water mark of this program image alone, counted from its exec) to the file it is given.
_MEASURED = """
import os, runpy, sys
peak_file = sys.argv.pop(1)
try:
    runpy.run_module("orchestrator.cli", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(peak_file, "w") as out:
        out.write(kb)
"""


def _subprocess(*argv: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `dcai` in a child process; its result and the child's own peak memory (MB).

    Not getrusage(RUSAGE_CHILDREN) nor wait4's ru_maxrss: Linux counts in them the memory of the
    process that forked the child (the pytest process), and under pytest-xdist a worker has grown by
    hundreds of MB from earlier modules' runs."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak_kb"
        r = subprocess.run([sys.executable, "-c", _MEASURED, str(peak_file), *argv], cwd=ROOT, capture_output=True,
                           text=True, timeout=120, env=env)
        peak_mb = int(peak_file.read_text()) / 1024
    return r, peak_mb


@pytest.mark.parametrize("argv,says", [
    (["validate", "tests/scenarios_bad/alias_bomb.yaml"], "alias bomb"),
    (["validate", "tests/scenarios_bad/deep_nesting.yaml"], "nested more than 50 levels"),
    (["validate", "tests/prechecks_bad/plugin_syntax_error.yaml"], "failed to import: SyntaxError in"),
    (["validate", "tests/sweeps_bad/grid_bad_value.yaml"], "in cell 'bogus'"),
    (["run", "scenarios/quickstart.yaml", "--seed", "-1"], "--seed: -1 is outside"),
])
def test_refused_in_a_real_process(argv: list[str], says: str) -> None:
    r, peak_mb = _subprocess(*argv)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert peak_mb < 500, peak_mb


def test_debug_shows_the_traceback() -> None:
    r, _ = _subprocess("--debug", "validate", "tests/scenarios_bad/count_zero.yaml")
    assert r.returncode != 0
    assert "Traceback" in r.stderr and "ScenarioError" in r.stderr, r.stderr[-2000:]
    r2, _ = _subprocess("validate", "tests/scenarios_bad/count_zero.yaml", "--debug")  # after the command too
    assert "Traceback" in r2.stderr


def test_a_huge_file_is_refused_by_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: big\n" + "# padding\n" * 120_000)
    code, err = _dcai(capsys, "validate", str(big))
    _refused_cleanly(code, err)
    assert "too large for a scenario file (limit 1,000,000 bytes)" in err, err


def test_a_valid_sweep_file_is_recognised(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "scenarios/sweep_mechanisms.yaml"])
    out = capsys.readouterr().out
    assert code == 0
    assert "ok (sweep sweep-mechanisms: 3 cells x 3 seeds = 9 runs)" in out


def test_internal_error_writes_a_redacted_crash_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator import logs
    from orchestrator.cli.errors import EXIT_INTERNAL_ERROR, report

    logs.register_secret("Crash-Pa55word-123")
    try:
        {}["missing"]  # a real failure, with a real traceback
    except KeyError as exc:
        try:
            raise RuntimeError("could not reach http://u:Crash-Pa55word-123@node:8545 after 3 tries") from exc
        except RuntimeError as err:
            code = report(err, tmp_path / "results", ["run", "x.yaml"])
    assert code == EXIT_INTERNAL_ERROR
    shown = capsys.readouterr().err
    assert "internal error: RuntimeError: could not reach http://node:8545" in shown
    (crash,) = (tmp_path / "results").glob("crash-*.log")
    assert str(crash) in shown and "Traceback" not in shown
    text = crash.read_text()
    assert "Traceback" in text and "KeyError" in text and "dcai run x.yaml" in text
    assert "Crash-Pa55word-123" not in text + shown
