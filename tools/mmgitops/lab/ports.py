"""Loopback ports for the lab's servers: one free at the moment, and a retry when another process took it first."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from mmgitops.errors import ToolError

T = TypeVar("T")

_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port free now, never one this process handed out before. For servers that cannot bind
    port 0 and report it; another process may still take it first, which port_clash() tells."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def bindable(places: Iterable[tuple[str, int]]) -> bool:
    """Whether every (address, port) can be bound now: a whole block of them is chosen or skipped at once."""
    try:
        for address, port in places:
            with socket.socket() as sock:
                sock.bind((address, port))
    except OSError:
        return False
    return True


def port_clash(log: Path, offset: int) -> bool:
    """Whether a server that exited at startup wrote, after `offset` in its log, that its port was taken."""
    try:
        with log.open("rb") as text:
            text.seek(offset)
            return b"address already in use" in text.read().lower()
    except OSError:
        return False


def retry_port_clash(start: Callable[[], T], log: Path, attempts: int = 3) -> T:
    """start(), again with fresh ports (start picks them) while it fails because its port was taken."""
    for attempt in range(attempts):
        offset = log.stat().st_size if log.exists() else 0
        try:
            return start()
        except ToolError:
            if attempt == attempts - 1 or not port_clash(log, offset):
                raise
    raise AssertionError("unreachable")
