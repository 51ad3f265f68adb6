"""``free_port`` never hands out a port twice in one process: the kernel may offer a port again until the
process it was picked for binds it (a benchmark once gave escalation and escalation-urgent the same port)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.localstack import net


class KernelOffering:
    """A socket bound to port 0 gets the next of ``offers`` (as the kernel may: the same port again)."""

    def __init__(self, offers: list[int]) -> None:
        self.offers = offers

    def __call__(self, *args: Any) -> KernelOffering:
        return self

    def __enter__(self) -> KernelOffering:
        return self

    def __exit__(self, *args: Any) -> None:
        return None

    def bind(self, address: tuple[str, int]) -> None:
        self.port = self.offers.pop(0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def test_a_port_offered_again_is_not_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(net, "_handed_out", set())
    monkeypatch.setattr(net.socket, "socket", KernelOffering([50001, 50001, 50001, 50002]))
    assert [net.free_port(), net.free_port()] == [50001, 50002]


def test_real_ports_are_distinct_and_free() -> None:
    ports = [net.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert not any(net.port_open("127.0.0.1", p) for p in ports[:5])
