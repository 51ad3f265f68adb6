"""The local stack that ``cme stack up`` and ``cme run`` start: Kafka (and PostgreSQL) on this machine, and
the topics. Its own module, so that the command line (``devtools.cli``) and the local run
(``devtools.localrun``) both use it without importing each other."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.settings import Settings

LOCAL_PG_PORT = 55432


def local_broker(settings: Settings):  # type: ignore[no-untyped-def]
    from shared.localstack.kafka import KafkaBroker

    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(
            f"CME_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} is not local: start that broker yourself"
        )
    return KafkaBroker(data_dir=settings.data_dir / "kafka", port=int(port), controller_port=int(port) + 1)


def local_postgres(settings: Settings):  # type: ignore[no-untyped-def]
    from shared.localstack.postgres import PostgresCluster

    return PostgresCluster(data_dir=settings.data_dir / "postgres", port=LOCAL_PG_PORT)


class StackError(Exception):
    """The local stack could not start; the message says what and where its log is."""


@dataclass
class StackStarted:
    env: dict[str, str]  # what the services need to reach the stack
    stops: list[tuple[str, Callable[[], None]]] = field(default_factory=list)  # what this call started

    def stop(self) -> None:
        for name, stop in reversed(self.stops):
            print(f"stopping {name} (started by this run)", file=sys.stderr)
            stop()


def stack_up(settings: Settings, with_postgres: bool) -> StackStarted:
    """Start Kafka (and PostgreSQL) unless they run already, create the topics. If a part fails to start,
    what this call started is stopped again and StackError says where the failing server's log is."""
    from shared.kafka import ensure_topics

    broker = local_broker(settings)
    started = StackStarted({"CME_KAFKA_BOOTSTRAP": broker.bootstrap, "CME_DATA_DIR": str(settings.data_dir)})
    try:
        if broker.running():
            print(f"kafka already running on {broker.bootstrap} (`cme stack down` stops it)", file=sys.stderr)
        else:
            try:
                seconds = broker.start()
            except Exception as exc:
                log_file = broker.data_dir / "server.log"
                raise StackError(f"kafka did not start ({exc}); its log: {log_file}") from exc
            started.stops.append(("kafka", broker.stop))
            print(f"kafka {broker.version} ready on {broker.bootstrap} ({seconds:.1f}s)", file=sys.stderr)
        if with_postgres:
            cluster = local_postgres(settings)
            if cluster.running():
                print(f"postgres already running on 127.0.0.1:{cluster.port}", file=sys.stderr)
            else:
                try:
                    cluster.start()
                except Exception as exc:
                    log_file = cluster.data_dir / "server.log"
                    raise StackError(
                        f"postgres did not start on 127.0.0.1:{cluster.port} ({type(exc).__name__}; is "
                        f"the port in use?); its log: {log_file}"
                    ) from exc
                started.stops.append(("postgres", cluster.stop))
                print(f"postgres ready on 127.0.0.1:{cluster.port}", file=sys.stderr)
            started.env["CME_DATABASE_URL"] = cluster.url
        ensure_topics(settings)
    except BaseException:
        started.stop()
        raise
    return started


def stack_down(settings: Settings) -> None:
    local_broker(settings).stop()
    local_postgres(settings).stop()
