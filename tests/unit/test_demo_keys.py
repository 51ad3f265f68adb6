"""The demo feed keeps its API clients between runs: a second `cme run` on the same day re-sends its facts
as the same client, so the referral service answers them as duplicates, not 409 event_id_reused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from devtools import demo_client
from shared.settings import Settings


def test_the_demo_key_is_made_once_kept_private_and_made_anew_on_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def create(env: dict[str, str], la_code: str, school_urn: str | None) -> str:
        made.append(f"cmek_{la_code}{school_urn or 'team'}_{len(made)}")
        return made[-1]

    monkeypatch.setattr(demo_client, "_create_key", create)
    settings = Settings(data_dir=tmp_path)
    first = demo_client.demo_api_key(settings, {}, la_code="801", school_urn="108000")
    again = demo_client.demo_api_key(settings, {}, la_code="801", school_urn="108000")
    team = demo_client.demo_api_key(settings, {}, la_code="801", school_urn=None)
    assert again == first and team != first and len(made) == 2
    saved = tmp_path / "demo-api-key-801-108000.txt"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    renewed = demo_client.demo_api_key(settings, {}, la_code="801", school_urn="108000", fresh=True)
    assert renewed not in (first, team) and saved.read_text() == renewed
