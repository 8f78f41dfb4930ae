"""An etcd server on loopback for the mesh's registry, as ModelMesh keeps its own in etcd."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from mmgitops.errors import ToolError
from mmgitops.lab.ports import free_port, retry_port_clash
from mmgitops.lab.spawn import spawn


def find_binary() -> Path:
    """Debian's etcd-server, else the etcd that `mmgitops local build` cached."""
    found = shutil.which("etcd")
    if found:
        return Path(found)
    from mmgitops.lab import binaries

    cached = binaries.planned().etcd
    if cached.is_file():
        return cached
    raise ToolError("no etcd binary: install Debian's etcd-server (apt-get install etcd-server), "
                    "or run `mmgitops local build`, which caches one")


@dataclass
class EtcdServer:
    endpoint: str
    pid: int


def start(data_dir: Path, log: Path, timeout: float = 30.0) -> EtcdServer:
    return retry_port_clash(lambda: _start_once(data_dir, log, timeout), log)


def command(data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    """A one-member etcd cluster named `mesh` on 127.0.0.1."""
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return [str(find_binary()), "--name", "mesh", "--data-dir", str(data_dir),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"mesh={peer_url}"]


def _start_once(data_dir: Path, log: Path, timeout: float) -> EtcdServer:
    client = free_port()
    client_url = f"http://127.0.0.1:{client}"
    process = spawn(command(data_dir, client, free_port()), log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ToolError(f"etcd exited with {process.returncode} at startup (log: {log})")
        try:
            if requests.get(f"{client_url}/health", timeout=1).ok:
                return EtcdServer(client_url, process.pid)
        except requests.RequestException:
            pass
        time.sleep(0.1)
    process.kill()
    raise ToolError(f"etcd not healthy after {timeout:.0f} s (log: {log})")
