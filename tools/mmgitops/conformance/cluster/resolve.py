"""How the suite reaches a runtime pod's ports (8033 gRPC, 8008 REST, 2112 metrics) from where it runs.

One pod, not the Service: a Service may pick a terminating pod, and checks name the pod they mean.
`PortForward` is the default and works on any cluster the kubeconfig can reach. `Annotation` is for a
local cluster whose pods have no network (kwok): its stand-in controller writes each pod's loopback
addresses into the pod annotation below.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.stream import portforward

from mmgitops.conformance.target import TargetError

ENDPOINTS_ANNOTATION = "mmgitops.io/endpoints"  # JSON {"8033": "127.0.0.1:PORT", ...}
RESOLVERS = ("port-forward", "annotation")


class Resolver(Protocol):
    def address(self, pod: str, port: int) -> str:
        """HOST:PORT on this machine that reaches `port` of `pod`."""
        ...

    def close(self) -> None: ...


class Annotation:
    """The stand-in writes the annotation once the pod's instance is up; until then the pod is not serving."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.core, self.namespace = core, namespace

    def address(self, pod: str, port: int) -> str:
        try:
            annotations = self.core.read_namespaced_pod(pod, self.namespace).metadata.annotations or {}
        except ApiException as error:
            raise TargetError("UNAVAILABLE", f"pod {self.namespace}/{pod}: {error.reason}") from None
        try:
            return str(json.loads(annotations[ENDPOINTS_ANNOTATION])[str(port)])
        except (KeyError, ValueError, TypeError):
            raise TargetError("UNAVAILABLE", f"pod {self.namespace}/{pod}: annotation {ENDPOINTS_ANNOTATION} "
                                             f"names no address for port {port}") from None

    def close(self) -> None:
        pass


class PortForward:
    """A loopback listener per (pod, port); each connection to it is a port-forward stream to the pod.

    Each stream gets an API client of its own: the kubernetes client opens a port-forward by swapping the
    request function of the client it is given, which would send another thread's plain API calls (or
    another stream's) down the websocket path."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.configuration, self.namespace = core.api_client.configuration, namespace
        self._listeners: dict[tuple[str, int], socket.socket] = {}
        self._lock = threading.Lock()

    def address(self, pod: str, port: int) -> str:
        with self._lock:
            listener = self._listeners.get((pod, port))
            if listener is None:
                listener = socket.create_server(("127.0.0.1", 0))
                self._listeners[(pod, port)] = listener
                threading.Thread(target=self._accept, args=(listener, pod, port), daemon=True,
                                 name=f"port-forward {pod}:{port}").start()
        return f"127.0.0.1:{listener.getsockname()[1]}"

    def _accept(self, listener: socket.socket, pod: str, port: int) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed by close()
                return
            threading.Thread(target=self._pipe, args=(conn, pod, port), daemon=True).start()

    def _pipe(self, conn: socket.socket, pod: str, port: int) -> None:
        forward: Any = None
        api = client.ApiClient(self.configuration)
        try:
            forward = portforward(client.CoreV1Api(api).connect_get_namespaced_pod_portforward, pod, self.namespace,
                                  ports=str(port))
            remote = forward.socket(port)
            remote.setblocking(True)
            _copy_both_ways(conn, remote)
        except (ApiException, OSError):
            pass  # the client sees its connection close, and its own retry policy decides what next
        finally:
            conn.close()
            if forward is not None:
                forward.close()
            api.close()

    def close(self) -> None:
        with self._lock:
            for listener in self._listeners.values():
                listener.close()
            self._listeners.clear()


def _copy_both_ways(a: socket.socket, b: socket.socket) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while True:
            for key, _ in selector.select():
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)


def make(kind: str, core: client.CoreV1Api, namespace: str) -> Resolver:
    return Annotation(core, namespace) if kind == "annotation" else PortForward(core, namespace)
