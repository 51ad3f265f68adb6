"""SASL/SCRAM over TLS against a real broker: a private Kafka broker whose only client listener is SASL_SSL
(a self-signed CA made with openssl, SCRAM users created at format time with StorageTool --add-scram). The
services' client settings connect, produce and consume with the right password and CA, and are refused with a
wrong password or without the CA."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from pydantic import SecretStr

from shared.kafka import ensure_topics, kafka_python_config
from shared.localstack.kafka import KafkaBroker, _kafka_cluster_id
from shared.localstack.net import free_port
from shared.settings import Settings
from shared.topics import INTAKE
from tests.support.kafka import read_topic

pytestmark = [pytest.mark.security, pytest.mark.integration]

ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex  # inter-broker user
CME_PASSWORD = "cme-" + uuid.uuid4().hex


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd)


def make_tls(d: Path) -> dict[str, Path]:
    """A CA, and a broker certificate for 127.0.0.1 signed by it (PEM; the key unencrypted PKCS#8)."""
    _openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=cme-test-ca")  # fmt: skip
    _openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
             "-subj", "/CN=127.0.0.1")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(d, "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "broker.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    keystore = d / "broker-keystore.pem"
    keystore.write_text((d / "broker.key").read_text() + (d / "broker.crt").read_text())
    return {"ca": d / "ca.pem", "keystore": keystore}


@dataclass
class SaslSslBroker(KafkaBroker):
    """KafkaBroker with a SASL_SSL client listener instead of PLAINTEXT."""

    tls: dict[str, Path] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        props = super()._write_config()
        assert self.tls is not None
        text = props.read_text().replace("PLAINTEXT://127.0.0.1", "SASL_SSL://127.0.0.1")
        text = text.replace(
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,",
        )
        text = text.replace("inter.broker.listener.name=PLAINTEXT", "inter.broker.listener.name=SASL_SSL")
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="admin" password="{ADMIN_PASSWORD}";'
        )
        text += "\n".join([
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.tls['keystore']}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.tls['ca']}",
        ]) + "\n"  # fmt: skip
        props.write_text(text)
        return props

    def format_with_users(self) -> None:
        """Format KRaft storage with the SCRAM credentials (users exist before the broker first starts)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        subprocess.run(
            self._java(
                "kafka.tools.StorageTool", "format", "-t", _kafka_cluster_id(), "-c", str(props),
                "--add-scram", f"SCRAM-SHA-512=[name=admin,password={ADMIN_PASSWORD}]",
                "--add-scram", f"SCRAM-SHA-512=[name=cme,password={CME_PASSWORD}]",
            ),
            check=True, capture_output=True,
        )  # fmt: skip


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslSslBroker]:
    d = tmp_path_factory.mktemp("sasl-ssl")
    broker = SaslSslBroker(data_dir=d / "kafka", port=free_port(), controller_port=free_port(), heap="384m",
                           tls=make_tls(d))  # fmt: skip
    broker.format_with_users()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(hard=True)


def _settings(broker: SaslSslBroker, password: str, ca: Path | None) -> Settings:
    return Settings(
        kafka_bootstrap=broker.bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="cme",
        kafka_sasl_password=SecretStr(password),
        kafka_ssl_cafile=ca,
        topic_prefix=f"t{uuid.uuid4().hex[:8]}-",
        topic_partitions=1,
    )


def test_services_client_settings_work_over_sasl_ssl(secure_broker: SaslSslBroker) -> None:
    assert secure_broker.tls is not None
    settings = _settings(secure_broker, CME_PASSWORD, secure_broker.tls["ca"])
    ensure_topics(settings, (INTAKE,), timeout_s=60)
    producer = KafkaProducer(acks="all", **kafka_python_config(settings))
    producer.send(INTAKE.name(settings), key=b"k", value=b"over TLS with SCRAM").get(timeout=30)
    producer.close()
    [record] = read_topic(settings, INTAKE.name(settings), expect=1, timeout_s=30)
    assert record.value == b"over TLS with SCRAM"


def test_wrong_password_or_untrusted_ca_is_refused(secure_broker: SaslSslBroker, tmp_path: Path) -> None:
    assert secure_broker.tls is not None
    wrong_password = _settings(secure_broker, "not-the-password", secure_broker.tls["ca"])
    other_ca = make_tls(tmp_path)["ca"]  # a CA that did not sign the broker's certificate
    untrusted = _settings(secure_broker, CME_PASSWORD, other_ca)
    for settings in (wrong_password, untrusted):
        with pytest.raises(KafkaError):
            consumer = KafkaConsumer(**kafka_python_config(settings), request_timeout_ms=10_000)
            try:
                consumer.topics()
            finally:
                consumer.close()
