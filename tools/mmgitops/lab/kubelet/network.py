"""The local cluster's pod network: one network namespace (lab/netns.py) in which every pod IP and Service IP is a
local address, with a way out to the API server.

kwok gives each pod an IP from its pod CIDR and kube-apiserver gives each Service a ClusterIP, but nothing on this
machine answers at those addresses. Inside this namespace both ranges are routed to `lo`, so a process that binds
every interface (modelmesh-serving's controller: :8080, :8081 and its fixed webhook port :9443; etcd's
`--listen-client-urls http://0.0.0.0:2379`) answers on them, and a client there that dials a pod IP from an
Endpoints object (the controller's KubeResolver) or a ClusterIP from DNS (here: the pod's hosts file) reaches it.
Nothing in it is reachable from the machine's own network.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mmgitops import procs
from mmgitops.errors import ToolError
from mmgitops.lab import egress, netns

# Pinned in the kwokctl configuration (lab/cluster/cluster.py) so that these routes match what the cluster hands out.
POD_CIDR, POD_CIDR_KWOK = "10.0.0.0/16", "10.0.0.1/16"  # kwok's --cidr names its first address
SERVICE_CIDR = "10.96.0.0/16"


def start(root: Path, apiserver_port: int) -> dict[str, int]:
    """The namespace's holder and its egress to the API server: name -> PID, to stop with `stop`."""
    root.mkdir(parents=True, exist_ok=True)
    holder = netns.start_holder(root / "netns.log")
    pids = {"pod-network": holder}
    try:
        for cidr in (POD_CIDR, SERVICE_CIDR):
            _inside(holder, ["ip", "route", "add", "local", cidr, "dev", "lo"])
        pids["pod-network-egress"] = egress.start(holder, [apiserver_port], root / "egress.log")
    except BaseException:
        stop(pids)
        raise
    return pids


def _inside(holder: int, argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, preexec_fn=netns.inside(holder))
    if proc.returncode != 0:
        raise ToolError(f"{' '.join(argv)} in the pod network failed: {proc.stderr.strip() or proc.returncode}")


def stop(pids: dict[str, int]) -> list[str]:
    stopped = []
    for name in sorted(pids, key=lambda n: n == "pod-network"):  # the holder last
        if procs.alive(pids[name]):
            procs.stop(pids[name], group=True)
            stopped.append(f"{name} (pid {pids[name]})")
    return stopped


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a pod IP is never behind a proxy


def probe(holder: int, host: str, handler: dict[str, Any], container: dict[str, Any], timeout: float = 1.0) -> bool:
    """A readiness or liveness probe's verdict, from inside the pod network as the kubelet probes a pod's IP:
    `httpGet` succeeds on a status from 200 to 399, `tcpSocket` on a connection (prober/prober.go runProbe).
    A probe of another kind (exec, grpc) is not run here and counts as success, as if the container had none."""
    kind = "httpGet" if "httpGet" in handler else "tcpSocket" if "tcpSocket" in handler else ""
    if not kind:
        return True
    port = _port(handler[kind].get("port"), container)
    verdict: list[bool] = []

    def work() -> None:
        netns.enter(holder)  # this thread's sockets are made in the pod network
        try:
            if kind == "tcpSocket":
                socket.create_connection((host, port), timeout=timeout).close()
                verdict.append(True)
            else:
                url = f"http://{host}:{port}{handler[kind].get('path') or '/'}"
                with _DIRECT.open(url, timeout=timeout) as answer:
                    verdict.append(200 <= answer.status < 400)
        except OSError:  # refused, timed out, or an HTTP error status (HTTPError is an OSError)
            pass

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return bool(verdict and verdict[0])


def post_json(holder: int, url: str, body: dict[str, Any], timeout: float = 5.0) -> tuple[int, str]:
    """POST body as JSON to url from inside the pod network: (HTTP status, answer text); (0, reason) when nothing
    answered."""
    answer: list[tuple[int, str]] = []

    def work() -> None:
        netns.enter(holder)
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with _DIRECT.open(request, timeout=timeout) as reply:
                answer.append((reply.status, reply.read().decode("utf-8", errors="replace")))
        except urllib.error.HTTPError as error:
            answer.append((error.code, error.read().decode("utf-8", errors="replace")))
        except OSError as error:
            answer.append((0, str(error)))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return answer[0] if answer else (0, "no answer")


def _port(port: Any, container: dict[str, Any]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ToolError(f"container {container.get('name')}: probe port {port!r} names no port of the container")
