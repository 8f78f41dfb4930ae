"""A network namespace with only `lo`, held open by one process, and a way to start processes inside it.

ModelMesh, rest-proxy and Argo CD's application controller bind every interface; inside this namespace "every
interface" is a loopback that nothing outside can reach, so the reference pods and the local Argo CD never listen
on the machine's real network. `bridge` (in) and `egress` (out) carry the connections they need.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mmgitops.errors import ToolError
from mmgitops.lab.spawn import die_with_parent, spawn

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def start_holder(log: Path, timeout: float = 10.0) -> int:
    """A `sleep` in a new network namespace with lo up; its PID names the namespace."""
    for tool in ("unshare", "ip"):
        if not shutil.which(tool):
            raise ToolError(f"reference pods need `{tool}` (util-linux / iproute2) to make a network namespace")
    proc = spawn(["unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep infinity"], log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ToolError(f"could not make a network namespace (unshare -n exited {proc.returncode}; root is "
                            f"needed): see {log}")
        try:
            if Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep":
                return proc.pid
        except OSError:
            pass
        time.sleep(0.02)
    proc.kill()
    raise ToolError(f"the network namespace holder did not start in {timeout:.0f} s (log {log})")


def enter(holder: int) -> None:
    """Move the calling thread into the holder's network namespace (threads it starts later follow it)."""
    fd = os.open(f"/proc/{holder}/ns/net", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into the namespace of pid {holder}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def inside(holder: int, die: bool = False) -> Callable[[], None]:
    """A preexec_fn that enters the namespace (and, with die, ties the child's life to its parent's)."""
    def preexec() -> None:
        if die:
            die_with_parent()
        enter(holder)
    return preexec


def connects_inside(holder: int, port: int, timeout: float = 0.5) -> bool:
    """Does 127.0.0.1:port answer inside the namespace? Checked from a thread that enters it."""
    answered: list[bool] = []

    def work() -> None:
        try:
            enter(holder)
            with socket.create_connection(("127.0.0.1", port), timeout=timeout):
                answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return bool(answered)


def with_hosts(argv: list[object], hosts: Path) -> list[object]:
    """argv run in a mount namespace of its own where `hosts` is bind-mounted over /etc/hosts: a pod's name
    resolution (cluster DNS, here a hosts file) for its processes alone. Children inherit it."""
    script = f"mount --bind {shlex.quote(str(hosts))} /etc/hosts && exec \"$@\""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv]
