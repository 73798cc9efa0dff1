"""Run logs and the console: every line has a level and a UTC timestamp, third-party debug chatter
(matplotlib's font lookups) stays out, logged exceptions are one line on the console, and the console
stream redacts secrets even when a write splits them."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest
import structlog

from orchestrator import logs
from orchestrator.cli.console import RedactingStream


@pytest.fixture
def restore_logging():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    logs.close()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])
    structlog.reset_defaults()


def test_every_line_has_level_and_time_and_no_font_noise(tmp_path: Path, restore_logging, capsys) -> None:
    log_file = tmp_path / "run.log.jsonl"
    logs.configure(log_file, console=True)
    structlog.get_logger("orchestrator.test").debug("own debug line", block=3)
    structlog.get_logger("dcai.run").debug("run debug line")  # the run's own logger names
    logging.getLogger("orchestrator.other").info("stdlib line of this project")
    logging.getLogger("some_library").warning("a library's warning")
    # Real matplotlib: drawing text makes the font manager log its font lookups at DEBUG.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.text(0.5, 0.5, "font lookup")
    fig.savefig(tmp_path / "f.png")
    plt.close(fig)
    try:
        raise ValueError("bad value in a worker")
    except ValueError:
        structlog.get_logger("orchestrator.test").exception("step failed")
    logs.close()

    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert {r["event"] for r in records} >= {"own debug line", "run debug line", "stdlib line of this project", "a library's warning",
                                             "step failed"}
    for r in records:
        assert r["level"] in ("debug", "info", "warning", "error", "critical"), r
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", r["timestamp"]), r
    assert not [r for r in records if r.get("logger", "").startswith("matplotlib")]
    failed = next(r for r in records if r["event"] == "step failed")
    assert "Traceback" in failed["exception"]  # the file keeps the traceback

    console = capsys.readouterr().err.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\S+Z \[(debug|info|warning|error)", line) for line in console), console
    (line,) = [c for c in console if "step failed" in c]
    assert "ValueError: bad value in a worker" in line and "Traceback" not in "\n".join(console)
    assert not any("own debug line" in c for c in console)  # the console shows INFO and up


def test_console_stream_redacts_secrets_split_over_writes() -> None:
    logs.register_secret("Zq9-console-secret")
    sink = io.StringIO()
    stream = RedactingStream(sink)
    for chunk in ("progress 10% url http://user:Zq9-con", "sole-secret@node:8545/ ok\r", "key Zq9-cons",
                  "ole-secret done\n", "no newline yet http://a:b@[::1"):
        stream.write(chunk)
    stream.flush()
    out = sink.getvalue()
    assert "Zq9-console-secret" not in out and "Zq9-con" not in out
    assert "http://node:8545/ ok\r" in out and "key [redacted] done\n" in out
    assert out.endswith("no newline yet http://[::1")  # an unparseable URL still loses its user part
