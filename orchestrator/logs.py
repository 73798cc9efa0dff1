"""structlog set-up: JSON lines into the run folder, readable lines on the console.

Secrets never reach a log: a processor drops keys that name them and redacts URLs with credentials.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

import structlog

from contracts.rpc import redact_url

_SECRET_KEYS = re.compile(r"(private|secret|password|passwd|mnemonic|api[_-]?key|token|^key$)", re.I)
_URL_WITH_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/@]+@[^\s]+", re.I)
_HEX_KEY = re.compile(r"\b0x[0-9a-fA-F]{64}\b")


def _scrub_value(v: Any) -> Any:
    if isinstance(v, str):
        v = _URL_WITH_CREDENTIALS.sub(lambda m: redact_url(m.group(0)), v)
        # 32-byte hex strings could be keys; transaction hashes are logged under keys ending in
        # "hash" and are kept (see scrub_secrets).
        return v
    return v


def scrub_secrets(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for k in list(event):
        if _SECRET_KEYS.search(k):
            event[k] = "[redacted]"
            continue
        v = _scrub_value(event[k])
        if isinstance(v, str) and not k.endswith("hash") and _HEX_KEY.search(v):
            v = _HEX_KEY.sub("0x[redacted-32-bytes]", v)
        event[k] = v
    return event


def configure(log_file: Path | None, *, console_level: int = logging.INFO, console: bool = True) -> None:
    """JSON lines to `log_file` (every level), console output at `console_level`."""
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer()))
        handlers.append(fh)
    if console:
        ch = logging.StreamHandler(sys.stderr)
        ch.setLevel(console_level)
        ch.setFormatter(structlog.stdlib.ProcessorFormatter(
            processor=structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())))
        handlers.append(ch)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in handlers:
        root.addHandler(h)
    root.setLevel(logging.DEBUG)
    for noisy in ("aiohttp", "asyncio", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            scrub_secrets,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def close() -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler):
            root.removeHandler(h)
            h.close()
