"""A reference pod (the real ModelMesh data plane, tools/mmgitops/reference) behind each runtime pod: the
`--engine reference` counterpart of fleet.Fleet, with the same interface.

One network namespace, etcd and egress bridge for the whole fleet (reference.podhost.Host); a pod of its own,
with its own loopback address, per runtime pod. The pods of one Kubernetes namespace share an etcd root
prefix and a type-constraints file, so they form one ModelMesh cluster, as in modelmesh-serving.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mmgitops.errors import ToolError
from mmgitops.lab.mesh import control
from mmgitops.lab.reference import build, podhost
from mmgitops.lab.standins.modelmesh import FLEET_FILE
from mmgitops.lab.standins.modelmesh.config import ETCD_ROOT_PREFIX, RuntimeSettings
from mmgitops.lab.standins.modelmesh.fleet import Instance, release

START_TIMEOUT_S = 240.0  # a JVM, MLServer and two Go programs on a busy 2-core machine
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class ReferenceFleet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.instances: dict[tuple[str, str], Instance] = {}
        self.host = podhost.Host(root / "reference")
        self.tables: dict[str, dict[str, tuple[str, ...]]] = {}
        self._built: build.Built | None = None
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}

    def sync_namespace(self, namespace: str, table: dict[str, tuple[str, ...]], storage_dir: Path) -> None:
        """What the namespace's pods mount, kept current as the controller keeps the ConfigMap and Secret: the
        tc-config type constraints, and a way out to the storages the Secret names on this machine."""
        self.tables[namespace] = table
        if (self.root / namespace / "tc-config").is_dir():
            self._namespace_files(namespace)
        if self.host.holder:
            self.host.ensure_egress(_loopback_ports(storage_dir))
            self._save()

    def _namespace_files(self, namespace: str) -> tuple[Path, Path]:
        return podhost.write_namespace_files(self.root / namespace / "tc-config", namespace,
                                             self.tables.get(namespace, {}), ETCD_ROOT_PREFIX)

    def start(self, namespace: str, pod: str, runtime: str, instance_id: str, settings: RuntimeSettings,
              churn_ms: int, storage_dir: Path) -> Instance:
        instance = Instance(namespace, pod, runtime, instance_id, {"pid": 0, "log": ""}, labels=settings.labels)
        self.instances[(namespace, pod)] = instance
        try:
            if self._built is None:
                self._built = build.build(None, lambda _text: None)  # cached after `local build reference`
            built = self._built
            self.host.ensure()
            self.host.ensure_egress(_loopback_ports(storage_dir))
            constraints, connection = self._namespace_files(namespace)
            taken = {p["index"] for p in self._pods.values()}
            started = podhost.start_pod(
                self.host, min(set(range(podhost.MAX_PODS)) - taken), podhost.free_address(
                    p["address"] for p in self._pods.values()), built, self.root / namespace / pod,
                podhost.PodConfig(pod_name=pod, labels=settings.labels, constraints_file=constraints,
                                  etcd_connection_file=connection, storage_dir=storage_dir,
                                  capacity_bytes=settings.capacity_bytes,
                                  default_model_size=settings.default_model_size_bytes, min_churn_age_ms=churn_ms,
                                  load_timeout_ms=settings.load_timeout_ms,
                                  loading_concurrency=settings.max_loading_concurrency))
        except (ToolError, OSError, ValueError) as error:
            instance.failed = str(error).splitlines()[0] if str(error) else repr(error)
            return instance
        finally:
            self._save()
        self._pods[(namespace, pod)] = started
        instance.process.update(started, reference_commit=built.commits["modelmesh"])
        self._save()
        return instance

    def poll(self, instance: Instance) -> bool:
        """Ready yet (the Deployment's readiness probe, /ready through the pod's bridge)? Never blocks for long."""
        if instance.settled(f"reference pod exited (logs: {instance.process['log']})"):
            return instance.ready
        instance.ready = control.probe_ready(instance.process["probes"], timeout=0.5)
        if not instance.ready and time.monotonic() - instance.started > START_TIMEOUT_S:
            instance.failed = f"not ready after {START_TIMEOUT_S:.0f} s (logs: {instance.process['log']})"
        return instance.ready

    def stop(self, key: tuple[str, str], kill: bool) -> None:
        if release(self.instances, key) is None:
            return
        started = self._pods.pop(key, None)
        if started is not None:
            podhost.stop_pod(started, kill)
        self._save()

    def stop_all(self) -> None:
        for key in list(self.instances):
            self.stop(key, kill=False)
        self.host.stop()
        self._save()

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pids = self.host.pids()
        for (namespace, pod), started in self._pods.items():
            pids[f"instance {namespace}/{pod}"] = started["pid"]
            pids[f"bridge {namespace}/{pod}"] = started["bridge"]
        (self.root / FLEET_FILE).write_text(json.dumps(pids, indent=2), encoding="utf-8")


def _loopback_ports(storage_dir: Path) -> list[int]:
    """The ports of the storages on this machine's loopback (the cluster's S3 server) the pods must reach."""
    ports = []
    for path in sorted(storage_dir.iterdir()) if storage_dir.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            url = urlsplit(str(json.loads(path.read_text(encoding="utf-8")).get("endpoint_url", "")))
            if url.hostname in LOOPBACK_HOSTS and url.port:
                ports.append(url.port)
    return ports
