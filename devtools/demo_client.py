"""An API key for the demo feed, made with the referral service's own client administration command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.settings import Settings


def demo_api_key(settings: Settings, env: dict[str, str], la_code: str, school_urn: str | None) -> str:
    """Create an API client for the demo: a school's with a URN, else the LA CME team's (an agency client).
    Each run makes fresh ones, since a key is shown only once."""
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
