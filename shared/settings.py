"""Settings from the environment (prefix CME_), with local defaults that run on one machine."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CME_", env_file=".env", extra="ignore")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    # Tests and side-by-side deployments give each run its own topic names.
    topic_prefix: str = ""
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    # Stream workers (faust): a standby replica keeps a warm copy of another worker's table partitions, so a
    # failover resumes in seconds instead of replaying the changelog (minutes at a million children). Needs
    # two or more replicas of the worker; 0 locally.
    stream_standby_replicas: int = Field(default=0, ge=0, le=3)
    # A few milliseconds let a batch's outputs and changelog records share produce requests.
    stream_producer_linger_s: float = Field(default=0.005, ge=0, le=1)
    # A stream partition behind its end with nothing of it in hand for this long is read again from its
    # committed offset (shared/stream_stalls.py); it is checked a third as often.
    stream_stall_after_s: float = Field(default=30.0, ge=1, le=3600)
    # A background loop (a consumer, an outbox relay, escalation's timer, notify's dispatcher) that has not
    # turned for this long is stuck in an await that never returns: /health/live answers 503 and the
    # supervisor restarts the process (seconds, real time; far above a turn's longest legitimate wait).
    loop_stalled_after_s: float = Field(default=300.0, gt=0)

    # Storage: SQLite by default for a quick local run; Postgres in production and in the tests.
    database_url: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'cme.db'}"
    data_dir: Path = PROJECT_ROOT / "var"

    # HTTP ports, one per service.
    referral_port: int = 8001
    tracking_port: int = 8002
    escalation_port: int = 8003
    escalation_urgent_port: int = 8013  # escalation's urgent lane, when it runs as a process of its own
    notify_port: int = 8004
    attendance_port: int = 8005
    web_port: int = 8080
    bind_host: str = "127.0.0.1"

    log_level: str = "INFO"
    log_json: bool = True

    # Escalation and calendar configuration (per-LA overrides live in these folders).
    rules_dir: Path | None = None
    calendars_dir: Path | None = None

    # Secret used to sign links and webhooks; must be set outside a local run.
    signing_key: SecretStr = SecretStr("local-development-only-signing-key")

    def topic(self, base: str) -> str:
        return f"{self.topic_prefix}{base}"


S = TypeVar("S", bound=Settings)


def service_settings(cls: type[S], base: Settings | None = None, **overrides: Any) -> S:
    """A service's own settings (a subclass of Settings, in its ``settings.py``): from the environment when no
    ``base`` is given, else carrying over every value of ``base`` (tests and ``cme run`` build one shared
    object and hand it to each service), with ``overrides`` on top. A ``base`` that already is ``cls`` is
    returned as it is when nothing is overridden."""
    if base is None:
        return cls(**overrides)
    if isinstance(base, cls) and not overrides:
        return base
    return cls(**{**base.model_dump(), **overrides})


@cache
def get_settings() -> Settings:
    return Settings()


def local_defaults_warning(settings: Settings) -> str | None:
    """A service started on its own with neither a broker nor a topic prefix given (environment or .env) runs
    on the local defaults: the broker and topics of a local ``cme run``, whose facts it would then read and
    publish into. Say so at start; ``cme run`` itself always names its broker."""
    given = settings.model_fields_set
    if "kafka_bootstrap" in given or "topic_prefix" in given:
        return None
    return (
        f"no CME_KAFKA_BOOTSTRAP or CME_TOPIC_PREFIX given (environment or .env): using the local defaults, "
        f"broker {settings.kafka_bootstrap} with unprefixed topics, the topics of any local `cme run`"
    )
