"""A TCP bridge from loopback addresses of this machine into a network namespace of `netns` (the reference pods').

`python -m mmgitops.lab.bridge --holder PID --routes FILE`: FILE is JSON [[listen_host, listen_port,
inner_port], ...]. The listening sockets are made first, in the root namespace; then the process moves
into the holder's namespace, so every socket made afterwards (the upstream connections) is inside it
and reaches 127.0.0.1:inner_port there. It is on the request path: one thread per direction with
plain recv/sendall and TCP_NODELAY, nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import selectors
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from mmgitops.lab import netns

CHUNK = 256 * 1024


def listen(routes: list[tuple[str, int, int]]) -> list[tuple[socket.socket, int]]:
    sockets = []
    for host, port, inner in routes:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sockets.append((sock, inner))
    return sockets


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        # Half-close so the other direction drains (HTTP/1.0 clients, gRPC GOAWAY), then let it finish.
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _serve(client: socket.socket, inner: int) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", inner), timeout=5)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def relay_forever(listeners: list[tuple[socket.socket, int]], ready: str) -> None:
    """Accept on every listener and relay each connection to 127.0.0.1:<its port> of the calling thread's
    namespace; print `ready` once listening."""
    selector = selectors.DefaultSelector()
    for sock, inner in listeners:
        selector.register(sock, selectors.EVENT_READ, inner)
    print(ready, flush=True)
    while True:
        for key, _ in selector.select():
            try:
                client, _addr = key.fileobj.accept()  # type: ignore[union-attr]
            except OSError:
                continue
            threading.Thread(target=_serve, args=(client, key.data), daemon=True).start()


def run(holder: int, routes: list[tuple[str, int, int]]) -> None:
    listeners = listen(routes)
    netns.enter(holder)
    relay_forever(listeners, "bridge ready")


def exit_code(name: str, relay: Callable[[], None]) -> int:
    """Relay until the process is stopped; a port taken or a namespace gone is one line on stderr and exit 1."""
    try:
        relay()
    except OSError as exc:
        print(f"{name}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmgitops.lab.bridge")
    parser.add_argument("--holder", type=int, required=True)
    parser.add_argument("--routes", type=Path, required=True)
    args = parser.parse_args(argv)
    routes = [(str(h), int(p), int(i)) for h, p, i in json.loads(args.routes.read_text(encoding="utf-8"))]
    return exit_code("bridge", lambda: run(args.holder, routes))


if __name__ == "__main__":
    sys.exit(main())
