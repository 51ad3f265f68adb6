"""Kafka client security settings (SASL/SCRAM, TLS) reach every client library the services use: kafka-python
(admin, producer, consumer), aiokafka, and faust (through its aiokafka driver), with a real CA file."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer
from pydantic import SecretStr

from shared.kafka import aiokafka_config, faust_broker_options, kafka_python_config
from shared.settings import Settings

pytestmark = [pytest.mark.security]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed CA and a client certificate signed by it (openssl), as a deployment would mount them."""
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=cme-test-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
        "-subj", "/CN=cme-client")  # fmt: skip
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "client.pem", "-days", "2")  # fmt: skip
    return {"ca": d / "ca.pem", "cert": d / "client.pem", "key": d / "client.key"}


def _settings(protocol: str, tls: dict[str, Path] | None = None, **kw: object) -> Settings:
    extra: dict[str, object] = {}
    if tls:
        extra = {
            "kafka_ssl_cafile": tls["ca"],
            "kafka_ssl_certfile": tls["cert"],
            "kafka_ssl_keyfile": tls["key"],
        }
    return Settings(kafka_bootstrap="broker-a:9093,broker-b:9093", kafka_security_protocol=protocol,
                    **extra, **kw)  # type: ignore[arg-type]  # fmt: skip


SCRAM: dict[str, Any] = {
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "cme-tracking",
    "kafka_sasl_password": SecretStr("s3cret-scram"),
}


def _trusts_ca(ctx: ssl.SSLContext) -> bool:
    return any(c.get("subject") == ((("commonName", "cme-test-ca"),),) for c in ctx.get_ca_certs())


def test_sasl_ssl_scram_reaches_kafka_python(tls_files: dict[str, Path]) -> None:
    cfg = kafka_python_config(_settings("SASL_SSL", tls_files, **SCRAM))
    assert cfg["bootstrap_servers"] == ["broker-a:9093", "broker-b:9093"]
    assert cfg["security_protocol"] == "SASL_SSL"
    assert (cfg["sasl_mechanism"], cfg["sasl_plain_username"], cfg["sasl_plain_password"]) == (
        "SCRAM-SHA-512", "cme-tracking", "s3cret-scram",
    )  # fmt: skip
    ctx = cfg["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname and _trusts_ca(ctx)
    # Every option is one kafka-python's clients know (a typo would be silently ignored or rejected).
    for client in (KafkaProducer, KafkaConsumer):
        assert set(cfg) <= set(client.DEFAULT_CONFIG), set(cfg) - set(client.DEFAULT_CONFIG)


async def test_sasl_ssl_scram_reaches_aiokafka(tls_files: dict[str, Path]) -> None:
    cfg = aiokafka_config(_settings("SASL_SSL", tls_files, **SCRAM))
    producer = AIOKafkaProducer(**cfg)  # built, not started: no connection is made
    consumer = AIOKafkaConsumer(**cfg)
    for client in (producer.client, consumer._client):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-512"
        assert client._sasl_plain_username == "cme-tracking"
        assert client._sasl_plain_password == "s3cret-scram"
        assert _trusts_ca(client._ssl_context)
    await consumer.stop()
    await producer.stop()


def test_sasl_ssl_scram_reaches_faust(tls_files: dict[str, Path]) -> None:
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    opts = faust_broker_options(_settings("SASL_SSL", tls_files, **SCRAM))
    assert opts["broker"] == "kafka://broker-a:9093,kafka://broker-b:9093"
    app = faust.App("cme-security-config-test", **opts)
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == "SASL_SSL"
    assert (auth["sasl_mechanism"], auth["sasl_plain_username"], auth["sasl_plain_password"]) == (
        "SCRAM-SHA-512", "cme-tracking", "s3cret-scram",
    )  # fmt: skip
    assert _trusts_ca(auth["ssl_context"])


def test_tls_only_reaches_all_three(tls_files: dict[str, Path]) -> None:
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    settings = _settings("SSL", tls_files)
    for cfg in (kafka_python_config(settings), aiokafka_config(settings)):
        assert cfg["security_protocol"] == "SSL" and _trusts_ca(cfg["ssl_context"])
        assert "sasl_mechanism" not in cfg
        # The client certificate is loaded for mutual TLS (load_cert_chain raised otherwise).
    app = faust.App("cme-security-config-test-ssl", **faust_broker_options(settings))
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == "SSL" and _trusts_ca(auth["ssl_context"])


def test_plaintext_has_no_tls_or_sasl() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9092")
    for cfg in (kafka_python_config(settings), aiokafka_config(settings)):
        assert cfg["security_protocol"] == "PLAINTEXT"
        assert "ssl_context" not in cfg and "sasl_mechanism" not in cfg
    assert "broker_credentials" not in faust_broker_options(settings)


def test_sasl_password_never_printed() -> None:
    settings = _settings("SASL_PLAINTEXT", **SCRAM)
    assert "s3cret-scram" not in repr(settings) and "s3cret-scram" not in str(settings.model_dump())
