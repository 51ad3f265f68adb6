"""An API key for the demo feed, made with the referral service's own client administration command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.settings import Settings


def demo_api_key(
    settings: Settings, env: dict[str, str], la_code: str, school_urn: str | None, *, fresh: bool = False
) -> str:
    """The demo's API key: a school's with a URN, else the LA CME team's (an agency client).

    Kept in the data folder (readable by its owner only) and used again by the next run: the referral service
    keys idempotency by client, so a second run on the same day re-sends its facts as the same client and gets
    them answered as duplicates, where a new client would get 409 event_id_reused for each. ``fresh`` makes a
    new one (the saved key no longer authenticates: a new store, a revoked key)."""
    saved = settings.data_dir / f"demo-api-key-{la_code}-{school_urn or 'team'}.txt"
    if not fresh and saved.exists():
        return saved.read_text().strip()
    key = _create_key(env, la_code, school_urn)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.unlink(missing_ok=True)
    with os.fdopen(os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(key)
    return key


def _create_key(env: dict[str, str], la_code: str, school_urn: str | None) -> str:
    """A new client, made with the referral service's own administration command (a key is shown once)."""
    cmd = [str(Path(sys.executable).parent / "cme-referral"), "clients", "create", "--la", la_code]
    if school_urn:
        cmd += ["--kind", "school", "--name", "demo school MIS", "--urn", school_urn]
    else:
        cmd += ["--kind", "agency", "--name", "demo LA CME team"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("api key:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError("cme-referral clients create printed no api key")
