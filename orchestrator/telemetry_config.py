"""The `telemetry:` section of a scenario: where live MQTT telemetry goes and how.

Secrets never appear here: `username_env` and `password_env` name environment variables that hold
them, and a broker URL that carries a password is rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PREFIX = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class _Strict(BaseModel):
    # the same conventions as the scenario schema: unknown keys and loose types are errors;
    # a rejected URL may carry a password: keep inputs out of the error text
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, hide_input_in_errors=True)


class TLSConfig(_Strict):
    ca_file: str | None = Field(None, description="CA bundle (PEM) that signed the broker's certificate; "
                                                  "the system's trust store when omitted")
    cert_file: str | None = Field(None, description="client certificate (PEM), for brokers that require one")
    key_file: str | None = Field(None, description="the client certificate's private key (PEM)")
    insecure: bool = Field(False, description="skip certificate and host-name verification (testing only)")

    @model_validator(mode="after")
    def _pair(self) -> TLSConfig:
        if self.key_file and not self.cert_file:
            raise ValueError("tls.key_file needs tls.cert_file")
        return self


@dataclass(frozen=True)
class BrokerEndpoint:
    scheme: str  # "mqtt" or "mqtts"
    host: str
    port: int
    username: str | None  # from the URL (not secret); the env variable wins when both are given

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    @property
    def display_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerEndpoint:
    """`mqtt://host[:port]` or `mqtts://host[:port]`; a user name may be given, a password may not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"not a broker URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("expected 'embedded', 'none' or a broker URL mqtt://host:port or mqtts://host:port "
                         f"(got scheme {parts.scheme or 'none'!r})")
    if not parts.hostname:
        raise ValueError("the broker URL has no host")
    if parts.password is not None:
        raise ValueError("the broker URL contains a password: put it in an environment variable and name "
                         "that variable in telemetry.password_env")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the broker URL takes no path, query or fragment (mqtt://host:port)")
    return BrokerEndpoint(scheme, parts.hostname, port or DEFAULT_PORTS[scheme], parts.username or None)


_INVARIANT_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


class InvariantsConfig(_Strict):
    """The live invariant monitors (orchestrator/invariants/, docs/telemetry.md "Invariants")."""

    enabled: bool = Field(True, description="check the invariants that apply to the run's mechanism and model "
                                            "against the chain after every block")
    only: list[str] | None = Field(None, description="run only these invariants (built-in names, names registered "
                                                     "through the dcai.invariants entry points, or module:Class)")
    skip: list[str] = Field(default_factory=list, description="invariants not to run")
    extra: list[str] = Field(default_factory=list, description="user invariants to add by import path "
                                                               "(module.path:Class) besides the registered ones")
    bundle_on_violation: bool = Field(True, description="save a replay bundle of the run up to the block of a "
                                                        "violation (managed nodes only)")
    max_bundles: int = Field(3, ge=0, le=100, description="violation bundles per run at most (the first violations)")
    window: int = Field(512, ge=1, description="model values re-read per block by the round-robin check (the "
                                               "whole model each block when it is smaller)")

    @field_validator("only", "skip", "extra")
    @classmethod
    def _names(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            if not _INVARIANT_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an invariant name or module.path:Class")
        return v


class TelemetryConfig(_Strict):
    mqtt: str = Field(
        "embedded",
        description="'embedded' (a broker inside the orchestrator, on a free loopback port), 'none' (no "
                    "telemetry) or the URL of a broker: mqtt://host:1883, mqtts://host:8883",
    )
    username_env: str | None = Field(None, description="name of the environment variable holding the user name")
    password_env: str | None = Field(None, description="name of the environment variable holding the password")
    tls: TLSConfig | None = Field(None, description="TLS options for an mqtts:// broker")
    qos: Literal[0, 1] = Field(0, description="MQTT quality of service of every publish")
    publish_every_blocks: int = Field(1, ge=1, description="publish one block record (and one set of "
                                                           "per-policy counters) every N blocks")
    queue_limit: int = Field(10_000, ge=1, description="messages waiting for the broker; beyond, new ones are "
                                                       "dropped and counted")
    topic_prefix: str = Field("dcai", description="topics are <topic_prefix>/<run-id>/...")
    retain_latest: bool = Field(True, description="retain the latest block, accuracy and counters too (not only the "
                                                  "status), so a watcher that joins late sees them at once")
    embedded_mode: Literal["subprocess", "inprocess"] = Field(
        "subprocess", description="run the embedded broker in a child process (default) or on the run loop")
    reconnect_min_s: float = Field(0.2, gt=0, le=60, description="first back-off after a lost connection")
    reconnect_max_s: float = Field(5.0, gt=0, le=600, description="longest back-off between connection attempts")
    connect_wait_s: float = Field(2.0, ge=0, le=60, description="how long start waits for the first connection "
                                                                "(it never fails because a broker is down)")
    metrics_port: int | None = Field(None, ge=0, le=65535,
                                     description="serve Prometheus /metrics on this port during the run (0: any free "
                                                 "port, logged); none by default. `dcai run --metrics-port N` sets it")
    metrics_host: str = Field("127.0.0.1", description="address the /metrics server binds (loopback by default; "
                                                       "0.0.0.0 exposes it to the network)")
    metrics_linger_s: float = Field(5.0, ge=0, le=300,
                                    description="at the end, keep /metrics up until it was scraped once more (at "
                                                "most this long) so the final figures reach Prometheus")
    invariants: InvariantsConfig = Field(default_factory=InvariantsConfig,
                                         description="live invariant monitors checked against the chain every block")

    @field_validator("mqtt")
    @classmethod
    def _mqtt(cls, v: str) -> str:
        if v in ("embedded", "none"):
            return v
        parse_broker_url(v)
        return v

    @field_validator("username_env", "password_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not an environment variable name (letters, digits, '_'); give the "
                             "variable's name here, never the secret itself")
        return v

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _PREFIX.fullmatch(v):
            raise ValueError(f"{v!r}: a topic prefix is one or more '/'-separated levels of letters, digits, "
                             "'_', '.', '-' (no wildcards, no leading or trailing '/')")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TelemetryConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        if self.mqtt in ("embedded", "none"):
            if self.username_env or self.password_env:
                raise ValueError(f"mqtt: {self.mqtt} takes no credentials (username_env / password_env need a "
                                 "broker URL)")
            if self.tls is not None:
                raise ValueError(f"mqtt: {self.mqtt} takes no tls options (they need an mqtts:// URL)")
            return self
        ep = parse_broker_url(self.mqtt)
        if self.tls is not None and not ep.tls:
            raise ValueError("tls options need an mqtts:// broker URL")
        if self.password_env and not (self.username_env or ep.username):
            raise ValueError("password_env needs a user name (username_env, or user@ in the URL): MQTT sends a "
                             "password only with a user name")
        return self

    @property
    def enabled(self) -> bool:
        return self.mqtt != "none"

    @property
    def embedded(self) -> bool:
        return self.mqtt == "embedded"

    def endpoint(self) -> BrokerEndpoint | None:
        """The external broker, or None for 'embedded' / 'none'."""
        return None if self.mqtt in ("embedded", "none") else parse_broker_url(self.mqtt)

    def required_env(self) -> list[str]:
        """Environment variables the configuration names (for a pre-flight check)."""
        return [n for n in (self.username_env, self.password_env) if n]
