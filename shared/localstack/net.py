"""Small network helpers for starting local servers."""

from __future__ import annotations

import socket
import threading
import time


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


_handed_out: set[int] = set()
_picking = threading.Lock()


def free_port() -> int:
    """A port nothing listens on now, and never one this process has handed out before: whoever a port is
    picked for binds it only later (a service's start), and until then the kernel may offer it again (a
    benchmark's escalation and escalation-urgent were once given the same port, and one failed to start)."""
    with _picking:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s:.0f}s")
        time.sleep(0.2)
