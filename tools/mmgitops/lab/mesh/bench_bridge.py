"""The bench's way into a reference mesh's network namespace, and what that way costs.

The reference pods' MLServer listens only inside the namespace, so the bench reaches it as it reaches the
pods: through a bridge (`mmgitops.lab.bridge`, the same program, a process of the bench's own). The
mesh path and the bare path then cross one bridge each, and "added by the mesh" excludes the bridge. The
bridge's own cost is measured apart: a TCP echo round trip through the bridge into the namespace against
the same round trip to an echo server beside the client.

`python -m mmgitops.lab.mesh.bench_bridge echo --port P` is that echo server (loopback only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgitops import procs
from mmgitops.errors import ToolError
from mmgitops.lab import netns
from mmgitops.lab.ports import free_port
from mmgitops.lab.reference import podspec
from mmgitops.lab.spawn import spawn

ECHO_INNER = 19977  # inside the namespace: below the pods' 20000+ blocks, away from etcd (2379) and S3 (9000)
PAYLOAD = 256  # about a probe ModelInfer request's size
READY_TIMEOUT = 30.0


# ---- the echo server ---------------------------------------------------------------------------------------
def _echo(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn, contextlib.suppress(OSError):
        while data := conn.recv(65536):
            conn.sendall(data)


def serve_echo(port: int) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    print("echo ready", flush=True)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


# ---- the bench's side --------------------------------------------------------------------------------------
def round_trip(sock: socket.socket, payload: bytes) -> float:
    """One echo round trip in ms."""
    started = time.perf_counter()
    sock.sendall(payload)
    got = 0
    while got < len(payload):
        chunk = sock.recv(len(payload) - got)
        if not chunk:
            raise ConnectionError("the echo connection closed")
        got += len(chunk)
    return (time.perf_counter() - started) * 1000


def connect(port: int, timeout: float = READY_TIMEOUT) -> socket.socket:
    """A connection that has echoed once: through the bridge, connect() succeeds before the far end is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            round_trip(sock, b"x")
            return sock
        except OSError:
            if time.monotonic() > deadline:
                raise ToolError(f"bench: no echo on 127.0.0.1:{port} after {timeout:.0f} s") from None
            time.sleep(0.1)


def round_trips(n: int, ports: dict[str, int]) -> dict[str, list[float]]:
    """n echo round trips per path, interleaved, so machine noise falls on every path alike."""
    payload = bytes(PAYLOAD)
    socks = {label: connect(port) for label, port in ports.items()}
    try:
        for sock in socks.values():  # warm up
            for _ in range(20):
                round_trip(sock, payload)
        out: dict[str, list[float]] = {label: [] for label in socks}
        for _ in range(n):
            for label, sock in socks.items():
                out[label].append(round_trip(sock, payload))
        return out
    finally:
        for sock in socks.values():
            sock.close()


@dataclass
class Way:
    """Where the bench reaches the holding pod's MLServer, and the echo ports for the bridge's cost."""

    mlserver: str
    echo_direct: int
    echo_bridged: int


@contextlib.contextmanager
def way_in(state: dict[str, Any], holder: int, work: Path) -> Iterator[Way]:
    """A bridge of the bench's own into the reference mesh's namespace (to the holder's MLServer and to an
    echo server there) and an echo server outside; all stopped by PID on the way out."""
    netns_pid = state["netns"]["pid"]
    mlserver_port, echo_port, direct_port = free_port(), free_port(), free_port()
    inner = podspec.inner_ports(holder)
    routes = work / "bench-routes.json"
    routes.write_text(json.dumps([["127.0.0.1", mlserver_port, inner["mlserver_grpc"]],
                                  ["127.0.0.1", echo_port, ECHO_INNER]]), encoding="utf-8")
    started: list[int] = []
    log = work / "bench-bridge.log"
    try:
        def start(argv: list[str], inside: bool) -> None:
            started.append(spawn(argv, log, preexec_fn=netns.inside(netns_pid) if inside else None).pid)

        echo = [sys.executable, "-m", "mmgitops.lab.mesh.bench_bridge", "echo", "--port"]
        start([*echo, str(ECHO_INNER)], inside=True)
        start([*echo, str(direct_port)], inside=False)
        start([sys.executable, "-m", "mmgitops.lab.bridge", "--holder", str(netns_pid),
               "--routes", str(routes)], inside=False)
        connect(echo_port).close()  # the bridge and both echo servers answer
        connect(direct_port).close()
        yield Way(f"127.0.0.1:{mlserver_port}", direct_port, echo_port)
    finally:
        for pid in reversed(started):
            procs.stop(pid, group=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmgitops.lab.mesh.bench_bridge")
    parser.add_argument("what", choices=("echo",))
    parser.add_argument("--port", type=int, required=True)
    serve_echo(parser.parse_args(argv).port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
