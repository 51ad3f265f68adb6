"""An API key for the demo feed, made with the referral service's own client administration command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.settings import Settings


def demo_api_key(settings: Settings, env: dict[str, str], la_code: str, school_urn: str) -> str:
    """Create a school API client for the demo (each run makes a fresh one; keys are shown only once)."""
    cmd = [
        str(Path(sys.executable).parent / "cme-referral"), "clients", "create", "--kind", "school",
        "--name", "demo feed", "--la", la_code, "--urn", school_urn,
    ]  # fmt: skip
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("api key:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError("cme-referral clients create printed no api key")
