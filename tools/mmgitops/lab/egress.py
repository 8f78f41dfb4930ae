"""A TCP bridge the other way: from 127.0.0.1:PORT inside a network namespace of `netns` out to 127.0.0.1:PORT
of this machine, for a service the processes inside must reach (the S3 server, the API server, Redis).

`python -m mmgitops.lab.egress --holder PID --port PORT [--port PORT ...]`. A network namespace is a
per-thread attribute: one short-lived thread enters the holder's namespace and makes the listening sockets
there; the main thread stays in this machine's namespace, accepts on them, and the threads it starts make
their upstream connections here.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

from mmgitops import procs
from mmgitops.errors import ToolError
from mmgitops.lab import netns

# one relay per connection, its upstream made in the calling thread's namespace
from mmgitops.lab.bridge import exit_code, relay_forever
from mmgitops.lab.spawn import spawn

Route = tuple[str, int, int]  # (address inside, port inside, port of 127.0.0.1 outside)


def listen_inside(holder: int, routes: list[Route]) -> list[tuple[socket.socket, int]]:
    made: list[tuple[socket.socket, int]] = []
    failed: list[OSError] = []

    def work() -> None:
        try:
            netns.enter(holder)
            for host, port, outside in routes:
                made.append((socket.create_server((host, port)), outside))
        except OSError as exc:
            failed.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if failed:
        for sock, _ in made:
            sock.close()
        raise failed[0]
    return made


def run(holder: int, routes: list[Route]) -> None:
    relay_forever(listen_inside(holder, routes), "egress ready")


def start(holder: int, ports: list[int], log: Path, timeout: float = 15.0,
          routes: tuple[Route, ...] = ()) -> int:
    """This module as a process of its own, once it listens inside the namespace: its PID. `ports` are the same
    inside and out, on 127.0.0.1; each of `routes` listens on an address of the namespace (a pod IP) instead."""
    argv: list[object] = [sys.executable, "-m", "mmgitops.lab.egress", "--holder", holder]
    for port in ports:
        argv += ["--port", port]
    for host, port, outside in routes:
        argv += ["--route", f"{host}:{port}={outside}"]
    pid = spawn(argv, log).pid
    deadline = time.monotonic() + timeout
    while b"egress ready" not in (log.read_bytes() if log.exists() else b""):
        if not procs.alive(pid) or time.monotonic() > deadline:
            raise ToolError(f"the bridge out to port(s) {', '.join(map(str, ports))} did not start (log {log})")
        time.sleep(0.1)
    return pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmgitops.lab.egress")
    parser.add_argument("--holder", type=int, required=True)
    parser.add_argument("--port", type=int, action="append", default=[],
                        help="127.0.0.1:PORT inside to 127.0.0.1:PORT outside")
    parser.add_argument("--route", type=_route, action="append", default=[], metavar="HOST:PORT=OUTSIDE",
                        help="HOST:PORT inside to 127.0.0.1:OUTSIDE outside")
    args = parser.parse_args(argv)
    if not args.port and not args.route:
        parser.error("give at least one --port or --route")
    routes = [("127.0.0.1", port, port) for port in args.port] + args.route
    return exit_code("egress", lambda: run(args.holder, routes))


def _route(text: str) -> Route:
    inside, _, outside = text.partition("=")
    host, _, port = inside.rpartition(":")
    if not host or not port.isdigit() or not outside.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT=OUTSIDE_PORT")
    return host, int(port), int(outside)


if __name__ == "__main__":
    sys.exit(main())
