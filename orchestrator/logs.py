"""structlog set-up: JSON lines into the run folder, readable lines on the console, both with a
level and a UTC timestamp on every line (also for records of third-party libraries).

Secrets never reach a log or the console: a processor drops keys that name them and redacts URLs
with credentials, and `redact_text` (which the CLI applies to everything it prints, see
orchestrator/cli/console.py) also removes every secret value registered with `register_secret`.
Third-party debug chatter (matplotlib's font lookups, asyncio, Ray, HTTP clients) is kept at WARNING:
the run's own modules log at DEBUG into the file.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog

from contracts.rpc import redact_url

_SECRET_KEYS = re.compile(r"(private|secret|password|passwd|mnemonic|api[_-]?key|token|^key$)", re.I)
_URL_WITH_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/@'\"]+@[^\s'\"]+", re.I)
_HEX_KEY = re.compile(r"\b0x[0-9a-fA-F]{64}\b")

# Loggers whose DEBUG/INFO output is noise in a run log; `configure` holds them at WARNING.
NOISY_LOGGERS = ("matplotlib", "PIL", "fontTools", "asyncio", "aiohttp", "urllib3", "filelock", "ray",
                 "websockets", "web3", "paho", "aiomqtt", "amqtt", "transitions", "numba", "kaleido",
                 "choreographer", "charset_normalizer", "parso", "h5py", "git")
# Packages of this project: their DEBUG lines go to the file.
OWN_LOGGERS = ("dcai", "orchestrator", "agents", "contracts", "__main__")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_console_tracebacks = False


def register_secret(value: str | None) -> None:
    """A value never to be shown (a password, a key); at least 6 characters, so that a short common
    string cannot blank out ordinary output."""
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)
            if value.lower().startswith("0x"):
                _secrets.add(value[2:])


def register_scenario_secrets(scenario: Any) -> None:
    """The secrets a scenario leads to: credentials in its RPC URLs, the funder's key and the broker
    user's password from the environment variables it names."""
    urls = scenario.chain.rpc_url
    for url in [urls] if isinstance(urls, str) else urls or []:
        try:
            parts = urlsplit(url)
            password, username, query = parts.password, parts.username, parts.query
        except ValueError:
            continue
        register_secret(password)
        if username and password:
            register_secret(f"{username}:{password}")
        register_secret(query)
    if scenario.chain.funder_key_env:
        register_secret(os.environ.get(scenario.chain.funder_key_env))
    telemetry = getattr(scenario, "telemetry", None)
    if telemetry is not None and getattr(telemetry, "password_env", None):
        register_secret(os.environ.get(telemetry.password_env))


def redact_text(text: str) -> str:
    """`text` without URL credentials and registered secrets. (32-byte hex strings are left: on the
    console they are transaction hashes; log fields holding keys are dropped by `scrub_secrets`.)"""
    if not text:
        return text
    text = _URL_WITH_CREDENTIALS.sub(_redact_url_match, text)
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "[redacted]")
        low = secret.lower()
        if low != secret and low in text:
            text = text.replace(low, "[redacted]")
    return text


def _redact_url_match(m: re.Match[str]) -> str:
    try:
        return redact_url(m.group(0))
    except ValueError:  # not a parseable URL after all (e.g. "[" in what follows): drop the user part
        return re.sub(r"//[^\s/@'\"]+@", "//", m.group(0))


def set_console_tracebacks(on: bool) -> None:
    """Whether the console shows full tracebacks of logged exceptions (`dcai --debug`); off, it shows
    the exception's one-line message and the file keeps the traceback."""
    global _console_tracebacks
    _console_tracebacks = on


def _scrub_value(v: Any) -> Any:
    if isinstance(v, str):
        return redact_text(v)
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


def _scrub_rendered(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    # Tracebacks are rendered late (format_exc_info); their text may quote a URL or a secret.
    for k in ("exception", "stack"):
        if isinstance(event.get(k), str):
            event[k] = redact_text(event[k])
    return event


def _short_exception(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    if _console_tracebacks:
        return event
    exc_info = event.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if exc_info[0] is not None:
            message = " ".join(str(exc_info[1]).split())[:300]
            event["error"] = redact_text(f"{exc_info[0].__name__}: {message}")
            event["traceback"] = "in run.log.jsonl (dcai --debug shows it here)"
    return event


def _pre_chain() -> list[Any]:
    # Applied to records from the standard library's logging too, so every line has level and time.
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        scrub_secrets,
    ]


def configure(log_file: Path | None, *, console_level: int = logging.INFO, console: bool = True) -> None:
    """JSON lines to `log_file` (every level of this project, WARNING and up of third parties),
    console output at `console_level`."""
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_pre_chain(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.format_exc_info, _scrub_rendered,
                        structlog.processors.JSONRenderer()]))
        handlers.append(fh)
    if console:
        ch = logging.StreamHandler(sys.stderr)
        ch.setLevel(console_level)
        ch.setFormatter(structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_pre_chain(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _short_exception,
                        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(),
                                                      exception_formatter=structlog.dev.plain_traceback)]))
        handlers.append(ch)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in handlers:
        root.addHandler(h)
    root.setLevel(logging.INFO)
    for own in OWN_LOGGERS:
        logging.getLogger(own).setLevel(logging.DEBUG)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*_pre_chain(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
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
