"""A single-node Apache Kafka broker in KRaft mode, from Maven Central's jars, on 127.0.0.1.

The jars are fetched once with mvn into .cache/kafka/<version>/libs (gitignored); storage is formatted with
kafka.tools.StorageTool and the broker runs as ``java kafka.Kafka``. See docs/KAFKA_VERSIONS.md for why
this version.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from shared.localstack.net import port_open, wait_for_port
from shared.settings import PROJECT_ROOT

KAFKA_VERSION = os.environ.get("CME_KAFKA_VERSION", "4.4.0")
SCALA_VERSION = "2.13"
CACHE_DIR = PROJECT_ROOT / ".cache" / "kafka"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>cme.local</groupId><artifactId>kafka-fetch</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{scala}</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
"""


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    return CACHE_DIR / version / "libs"


def fetch(version: str = KAFKA_VERSION) -> Path:
    """Download the broker and its runtime dependencies with mvn (once; later calls reuse the cache)."""
    target = libs_dir(version)
    marker = target / ".complete"
    if marker.exists():
        return target
    if not shutil.which("mvn") or not shutil.which("java"):
        raise RuntimeError("Kafka needs a JDK (java) and Maven (mvn) on PATH to fetch the broker")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pom.xml").write_text(_POM.format(scala=SCALA_VERSION, version=version))
        staging = Path(tmp) / "libs"
        # Quiet, and captured: even with colour off, mvn writes bare ANSI resets; its words matter only
        # when it fails.
        fetched = subprocess.run(
            [
                "mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(Path(tmp) / "pom.xml"),
                "dependency:copy-dependencies", f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
            ],
            capture_output=True, text=True,
        )  # fmt: skip
        if fetched.returncode != 0:
            raise RuntimeError(
                f"mvn could not fetch Kafka {version} from Maven Central (exit {fetched.returncode}):\n"
                + re.sub(r"\x1b\[[0-9;]*m", "", fetched.stdout + fetched.stderr)[-3000:]
            )
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, target)
    marker.write_text(version)
    return target


@dataclass
class KafkaBroker:
    """One broker+controller process. ``start`` is idempotent for a data dir that is already running."""

    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    version: str = KAFKA_VERSION
    heap: str = "768m"
    log_level: str = "WARN"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    def _write_config(self) -> Path:
        props = self.data_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data_dir / 'logs'}",
                    "num.partitions=4",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                ]
            )
            + "\n"
        )
        (self.data_dir / "log4j2.properties").write_text(
            _LOG4J2.format(log=self.data_dir / "server.log", level=self.log_level)
        )
        return props

    def _java(self, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp", f"{fetch(self.version)}/*", *args,
        ]  # fmt: skip

    def running(self) -> bool:
        pid = self._pid()
        return pid is not None and _alive(pid) and port_open("127.0.0.1", self.port)

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def start(self, timeout_s: float = 90.0) -> float:
        """Start the broker (formatting storage the first time); returns seconds until it answered."""
        if self.running():
            return 0.0
        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = _kafka_cluster_id()
            subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        out = open(self.data_dir / "stdout.log", "ab")  # noqa: SIM115 - handed to the child process
        proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props), heap=self.heap),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the parent's terminal must not kill the broker mid-test
        )
        self.pid_file.write_text(str(proc.pid))
        try:
            wait_for_port("127.0.0.1", self.port, timeout_s)
        except TimeoutError:
            proc.kill()
            raise
        return time.monotonic() - began

    def stop(self, timeout_s: float = 30.0, hard: bool = False) -> None:
        pid = self._pid()
        if pid is None or not _alive(pid):
            return
        os.kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)


def _kafka_cluster_id() -> str:
    """A KRaft cluster id: a base64url UUID without padding, as StorageTool random-uuid prints. Never one
    that starts with "-": ``format -t -3Vm...`` reads it as an option and fails ("expected one argument"),
    one format in 64; Kafka's own Uuid.randomUuid() draws again for the same reason."""
    import base64

    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not found.startswith("-"):
            return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers signal 0: read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        return state != "Z"
    except (FileNotFoundError, IndexError):
        return True
