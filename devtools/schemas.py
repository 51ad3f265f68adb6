"""JSON Schema for every event and an AsyncAPI document for the topics, generated from the code.

``cme schemas export`` writes them under docs/; ``cme schemas check`` (run by the tests) fails when the files
and the code have drifted apart, so the published contract is always the one the code enforces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from shared.events.catalogue import ALL_EVENT_CLASSES
from shared.events.envelope import Envelope
from shared.settings import PROJECT_ROOT
from shared.topics import ALL_TOPICS

DOCS_DIR = PROJECT_ROOT / "docs"
SCHEMA_DIR = DOCS_DIR / "schemas"
ASYNCAPI_FILE = DOCS_DIR / "asyncapi.yaml"


def _event_type(cls: type[Envelope]) -> str:
    return str(cls.model_fields["event_type"].default)


def event_schema(cls: type[Envelope]) -> dict[str, Any]:
    schema = cls.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://cme-tracker.example/schemas/{_event_type(cls)}.schema.json"
    return schema


def asyncapi_document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for cls in ALL_EVENT_CLASSES:
        name = _event_type(cls)
        messages[name] = {
            "name": name,
            "title": cls.__name__,
            "summary": (cls.__doc__ or cls.__name__).strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": f"schemas/{name}.schema.json"},
        }
    for spec in ALL_TOPICS:
        channel_id = spec.base_name.replace(".", "_").replace("-", "_")
        channels[channel_id] = {
            "address": spec.base_name,
            "description": spec.description,
            "messages": {
                _event_type(c): {"$ref": f"#/components/messages/{_event_type(c)}"} for c in spec.events
            },
            "bindings": {
                "kafka": {
                    "topicConfiguration": {
                        "cleanup.policy": [spec.cleanup_policy],
                        "retention.ms": spec.retention_ms,
                    },
                    "bindingVersion": "0.5.0",
                }
            },
            "x-key": spec.key,
            "x-producer": spec.producer,
            "x-consumers": list(spec.consumers),
        }
        operations[f"publish_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{spec.producer} publishes",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CME Tracker event bus",
            "version": "1.0.0",
            "description": "Topics and events of CME Tracker, made by `cme schemas export`: do not edit.",
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def rendered_files() -> dict[Path, str]:
    files = {
        SCHEMA_DIR / f"{_event_type(cls)}.schema.json": json.dumps(
            event_schema(cls), indent=2, sort_keys=True
        )
        + "\n"
        for cls in ALL_EVENT_CLASSES
    }
    files[ASYNCAPI_FILE] = yaml.safe_dump(asyncapi_document(), sort_keys=False, width=110)
    return files


def export() -> list[Path]:
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for path, text in rendered_files().items():
        path.write_text(text)
        written.append(path)
    return written


def drift() -> list[str]:
    """Files that differ from what the code generates (missing, changed, or left over)."""
    expected = rendered_files()
    problems = [
        str(path.relative_to(PROJECT_ROOT))
        for path, text in expected.items()
        if not path.exists() or path.read_text() != text
    ]
    if SCHEMA_DIR.exists():
        problems += [
            f"{p.relative_to(PROJECT_ROOT)} (no such event any more)"
            for p in SCHEMA_DIR.glob("*.schema.json")
            if p not in expected
        ]
    return problems
