"""Scenario loader error reporting: every malformed fixture at its location and line, and the
details of an error (format, order, duplicates, merge keys, syntax, secrets never echoed)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from orchestrator.scenario import ScenarioError, ScenarioIssue, load_scenario, load_scenario_text

from scenario_helpers import MINIMAL, _errors

BAD_DIR = Path(__file__).parent / "scenarios_bad"
BAD_FILES = sorted(BAD_DIR.glob("*.yaml"))


# --------------------------------------------------------------------------
# Malformed files: each names the location and line it must be reported at.

_EXPECT = re.compile(r"#\s*expect:\s*(?P<loc>\S+)\s*@\s*(?P<line>\d+|-)\s*$")
_SAYS = re.compile(r"#\s*says:\s*(?P<text>.+?)\s*$")


def _expectation(path: Path) -> tuple[str, int | None, str | None]:
    lines = path.read_text(encoding="utf-8").splitlines()
    match = _EXPECT.match(lines[0]) if lines else None
    assert match, f"{path.name}: first line must be '# expect: <location> @ <line>'"
    location = "" if match["loc"] == "-" else match["loc"]
    line = None if match["line"] == "-" else int(match["line"])
    says = _SAYS.match(lines[1]) if len(lines) > 1 else None
    return location, line, says["text"] if says else None


def test_there_are_enough_bad_fixtures() -> None:
    assert len(BAD_FILES) >= 30


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_scenario_is_reported_at_its_location(path: Path) -> None:
    location, line, says = _expectation(path)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert err.path == str(path)
    rendered = str(err)
    hits = [i for i in err.issues if i.location == location and i.line == line]
    assert hits, f"expected an issue at {location or '<file>'} line {line}, got:\n{rendered}"
    if says is not None:
        assert any(says in i.message for i in hits), f"{says!r} not in:\n{rendered}"
    # The rendered form carries the same facts, one issue per line.
    assert len(rendered.splitlines()) == len(err.issues)
    prefix = f"{path}:{line}" if line is not None else f"{path}:"
    assert any(
        text.startswith(prefix) and (f": {location}: " in text if location else True)
        for text in rendered.splitlines()
    ), rendered


# --------------------------------------------------------------------------
# Error details


def test_error_line_format() -> None:
    text = MINIMAL.replace("count: 2", "count: 0")
    err = _errors(text, "scenarios/x.yaml")
    assert str(err) == (
        "scenarios/x.yaml:4:12: agents[0].count: "
        "Input should be greater than or equal to 1 (got 0)"
    )
    assert err.issues == [
        ScenarioIssue(
            "agents[0].count", 4, 12, "Input should be greater than or equal to 1 (got 0)"
        )
    ]


def test_unknown_key_lists_allowed_keys_and_points_at_key() -> None:
    text = MINIMAL + "chain:\n  accounts: 3\n  blok_time: 2\n"
    (issue,) = _errors(text).issues
    assert issue.location == "chain.blok_time"
    assert (issue.line, issue.column) == (9, 3)
    assert issue.message.startswith(
        "unknown key 'blok_time' (allowed: rpc_url, mining, block_time, gas_limit,"
    )
    assert "did you mean 'block_time'?" in issue.message


def test_every_problem_is_reported_in_line_order() -> None:
    text = """\
name: many
chain: {block_time: 0}
agents:
  - policy: honest
    count: 0
  - policy: honest bot
    count: 1
    rate: 2/fortnight
schedule: {}
"""
    err = _errors(text)
    assert [(i.location, i.line) for i in err.issues] == [
        ("chain.block_time", 2),
        ("agents[0].count", 5),
        ("agents[1].policy", 6),
        ("agents[1].rate", 8),
        ("schedule.duration", 9),
    ]


def test_duplicate_key_mentions_both_lines() -> None:
    text = MINIMAL + "seed: 1\nseed: 2\n"
    (issue,) = _errors(text).issues
    assert issue.location == "seed"
    assert issue.line == 8
    assert "first defined on line 7" in issue.message
    assert "again on line 8" in issue.message


def test_merge_keys_are_not_duplicates_and_are_located() -> None:
    text = """\
name: merged
agents:
  - &honest {policy: honest, count: 2}
  - <<: *honest
    name: honest-2
    count: 0
schedule: {duration: 10}
"""
    (issue,) = _errors(text).issues
    assert (issue.location, issue.line) == ("agents[1].count", 6)


def test_merge_keys_load() -> None:
    text = MINIMAL + "  - <<: {policy: greedy, count: 4}\n    name: g2\n"
    text = text.replace("schedule:\n  duration: 100\n", "") + "schedule: {duration: 1}\n"
    scenario = load_scenario_text(text)
    assert [(g.name, g.count) for g in scenario.agents] == [("honest", 2), ("g2", 4)]


def test_missing_file() -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario("does/not/exist.yaml")
    message = str(info.value)
    assert message.startswith("does/not/exist.yaml: file not found")
    assert "exist.yaml" in message.split("file not found", 1)[1]


def test_directory_is_not_a_scenario(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="is a directory"):
        load_scenario(tmp_path)


def test_yaml_syntax_error_has_line_and_column() -> None:
    (issue,) = _errors("name: x\nseed: 1: 2\n").issues
    assert (issue.location, issue.line, issue.column) == ("", 2, 8)
    assert issue.message.startswith("YAML syntax error: mapping values are not allowed")


def test_unprintable_character_is_a_syntax_error() -> None:
    (issue,) = _errors("name: x\nseed: 1\x07\n").issues
    assert issue.line == 2
    assert "YAML syntax error" in issue.message


def test_non_string_keys_are_reported_on_their_mapping() -> None:
    text = MINIMAL.replace("count: 2", "count: 2\n    params: {3: x}")
    (issue,) = _errors(text).issues
    assert (issue.location, issue.line) == ("agents[0].params", 5)
    assert "key 3 must be text" in issue.message


def test_private_key_is_never_echoed() -> None:
    key = "0x" + "ab" * 32
    for value in (f'"{key}"', key):  # quoted string, and YAML's hex integer
        text = MINIMAL + f"chain:\n  rpc_url: http://127.0.0.1:8545\n  funder_key_env: {value}\n"
        err = _errors(text)
        assert [i.location for i in err.issues] == ["chain.funder_key_env"]
        assert "ab" * 32 not in str(err)
        assert str(int(key, 16)) not in str(err)


def test_error_is_picklable() -> None:
    err = _errors(MINIMAL.replace("count: 2", "count: 0"))
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.issues, str(copy)) == (err.path, err.issues, str(err))


def test_error_without_location_or_line_formats_cleanly() -> None:
    err = ScenarioError("a.yaml", [ScenarioIssue("", None, None, "boom")])
    assert str(err) == "a.yaml: boom"
    err = ScenarioError("a.yaml", [ScenarioIssue("seed", 3, None, "bad")])
    assert str(err) == "a.yaml:3: seed: bad"
