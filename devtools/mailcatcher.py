"""A local SMTP server for ``cme run``: every message is written to a folder as an .eml file to read."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _SaveToFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._numbers = itertools.count(len(list(folder.glob("*.eml"))) + 1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        (self.folder / f"{next(self._numbers):05d}.eml").write_bytes(envelope.content)
        return "250 Message accepted"


def start_mail_catcher(folder: Path, port: int) -> Controller:
    folder.mkdir(parents=True, exist_ok=True)
    controller = Controller(_SaveToFolder(folder), hostname="127.0.0.1", port=port)
    controller.start()
    return controller
