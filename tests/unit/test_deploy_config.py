"""Deployment files are checked offline: compose against the Compose spec, manifests against Kubernetes."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from devtools import schemas
from shared.settings import PROJECT_ROOT

SERVICES = ("referral", "tracking", "escalation", "notify", "attendance", "web")


def test_event_schemas_and_asyncapi_match_the_code() -> None:
    assert schemas.drift() == [], "run `cme schemas export` and commit docs/"


def test_compose_file_follows_the_compose_spec() -> None:
    spec_text = (
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    jsonschema.validate(compose, json.loads(spec_text))
    for name in SERVICES:
        service = compose["services"][name]
        assert service["command"][0] == f"cme-{name}"
        assert "healthcheck" in service
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")


def test_compose_refuses_to_start_without_a_signing_key() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    assert ":?" in compose["x-service-env"]["CME_SIGNING_KEY"]


@pytest.mark.parametrize(
    "manifest", sorted((PROJECT_ROOT / "deploy" / "k8s").glob("*.yaml")), ids=lambda p: p.name
)
def test_kubernetes_manifests_are_valid(manifest: Path) -> None:
    for document in yaml.safe_load_all(manifest.read_text()):
        kubernetes_validate.validate(document, "1.37.0", strict=True)


def test_every_service_has_an_entry_point_and_a_manifest() -> None:
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name in SERVICES:
        assert scripts[f"cme-{name}"] == f"services.{name}.main:main"
        assert (PROJECT_ROOT / "deploy" / "k8s" / f"{name}.yaml").exists()
    for stateful in ("tracking", "attendance"):  # faust workers keep RocksDB state on a volume
        manifest = (PROJECT_ROOT / "deploy" / "k8s" / f"{stateful}.yaml").read_text()
        assert "StatefulSet" in {d["kind"] for d in yaml.safe_load_all(manifest)}


def _env(container: dict[str, object]) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container["env"]}  # type: ignore[attr-defined]


def test_escalation_runs_its_urgent_lane_in_a_process_of_its_own_in_both_deployments() -> None:
    """docker-compose.yml and the manifests run escalation's two roles, each on its own port, so a bulk load
    never holds the urgent lane (docs/ESCALATION.md, "Roles")."""
    from services.escalation.settings import EscalationSettings

    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    roles = {
        name: compose[name]["environment"]["CME_ESCALATION_ROLE"]
        for name in ("escalation", "escalation-urgent")
    }
    assert roles == {"escalation": "in_order", "escalation-urgent": "urgent"}
    urgent = compose["escalation-urgent"]
    assert urgent["command"] == ["cme-escalation", "serve"] and "healthcheck" in urgent
    assert urgent["environment"]["CME_ESCALATION_PORT"] == urgent["environment"]["PORT"] != "8003"
    deployments = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]
        for d in yaml.safe_load_all((PROJECT_ROOT / "deploy" / "k8s" / "escalation.yaml").read_text())
        if d["kind"] == "Deployment"
    }
    assert {name: _env(c)["CME_ESCALATION_ROLE"] for name, c in deployments.items()} == {
        "cme-escalation": "in_order",
        "cme-escalation-urgent": "urgent",
    }
    for role in ("in_order", "urgent"):  # each value is one the service accepts
        assert EscalationSettings(escalation_role=role).escalation_role == role
