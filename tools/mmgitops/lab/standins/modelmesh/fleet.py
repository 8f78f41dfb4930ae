"""An embedded local mesh instance behind each runtime pod: started when kwok runs the pod, killed when it goes.

All instances of one namespace form one mesh (one registry prefix in a shared etcd), as all the runtime
pods of a namespace do in ModelMesh; each carries its runtime's labels and default model size. Every
process is recorded in fleet.json, so `mmgitops local cluster down` can stop them by PID even if the
stand-in itself was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from mmgitops import procs
from mmgitops.lab.mesh import control, etcdserver
from mmgitops.lab.mesh.serve import InstanceConfig
from mmgitops.lab.standins.modelmesh import FLEET_FILE
from mmgitops.lab.standins.modelmesh.config import RuntimeSettings, registry_prefix
from mmgitops.modelmesh import samples
from mmgitops.modelmesh.defaults import GRPC_PORT, METRICS_PORT, PROBE_PORT, REST_PORT

START_TIMEOUT_S = 120.0


@dataclass
class Instance:
    namespace: str
    pod: str
    runtime: str
    instance_id: str
    process: dict[str, Any]  # pid, log, and grpc/rest/metrics/probes once bound
    labels: tuple[str, ...] = ()  # MM_LABELS: which model types the instance may hold
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    failed: str = ""
    _channel: grpc.Channel | None = None

    def channel(self) -> grpc.Channel:
        """The controller's channel to the instance's gRPC port (closed when the instance stops)."""
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.process["grpc"])
        return self._channel

    def settled(self, exited: str) -> bool:
        """Whether polling it has nothing left to learn: ready, or failed (`exited` when its process is gone)."""
        if not (self.ready or self.failed) and not procs.alive(self.process["pid"]):
            self.failed = exited
        return self.ready or bool(self.failed)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()

    def endpoints(self) -> dict[str, str]:
        """Pod port -> loopback HOST:PORT, for the suite's annotation resolver."""
        strip = lambda url: url.split("//", 1)[-1].split("/", 1)[0]  # noqa: E731
        return {str(GRPC_PORT): self.process["grpc"], str(REST_PORT): strip(self.process["rest"]),
                str(METRICS_PORT): strip(self.process["metrics"]), str(PROBE_PORT): strip(self.process["probes"])}


def release(instances: dict[tuple[str, str], Instance], key: tuple[str, str]) -> Instance | None:
    """Forget a fleet's instance, closing the controller's channel to it; None when the fleet has none."""
    instance = instances.pop(key, None)
    if instance is not None:
        instance.close()
    return instance


class Fleet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.instances: dict[tuple[str, str], Instance] = {}
        self.etcd: etcdserver.EtcdServer | None = None
        self._warmup: Path | None = None

    def sync_namespace(self, namespace: str, table: dict[str, tuple[str, ...]], storage_dir: Path) -> None:
        """Nothing to do: an embedded instance builds its type constraints from the labels of the live
        instances, and reads its storage config from the directory as it is at each load."""

    def _ensure_etcd(self) -> str:
        if self.etcd is None or not procs.alive(self.etcd.pid):
            self.root.mkdir(parents=True, exist_ok=True)
            self.etcd = etcdserver.start(self.root / "etcd", self.root / "etcd.log")
            self._save()
        return self.etcd.endpoint

    def _warmup_model(self) -> str:
        if self._warmup is None:
            self._warmup = samples.train(self.root / "warmup", 1)[0].path
        return str(self._warmup)

    def start(self, namespace: str, pod: str, runtime: str, instance_id: str, settings: RuntimeSettings,
              churn_ms: int, storage_dir: Path) -> Instance:
        work = self.root / namespace / pod
        config = InstanceConfig(
            instance_id=instance_id, etcd=self._ensure_etcd(), prefix=registry_prefix(namespace),
            work_dir=str(work), capacity_bytes=settings.capacity_bytes, min_churn_age_ms=churn_ms,
            load_timeout_ms=settings.load_timeout_ms, max_loading_concurrency=settings.max_loading_concurrency,
            storage_config=str(storage_dir), warmup_model=self._warmup_model(),
            default_model_size_bytes=settings.default_model_size_bytes, labels=list(settings.labels))
        instance = Instance(namespace, pod, runtime, instance_id, control.start_instance(config, work),
                            labels=settings.labels)
        self.instances[(namespace, pod)] = instance
        self._save()
        return instance

    def poll(self, instance: Instance) -> bool:
        """Ready yet? Never blocks for long: the controller loop serves every namespace."""
        if instance.settled(f"instance exited (log: {instance.process['log']})"):
            return instance.ready
        if "grpc" not in instance.process:
            bound = control.endpoints(instance.process)
            if bound is None:
                if time.monotonic() - instance.started > START_TIMEOUT_S:
                    instance.failed = f"no ports after {START_TIMEOUT_S:.0f} s (log: {instance.process['log']})"
                return False
            instance.process.update(bound)
        # The pod's readiness probe (HTTP /ready): ServerReady on the mesh port needs a model id.
        instance.ready = control.probe_ready(instance.process["probes"], timeout=0.5)
        return instance.ready

    def stop(self, key: tuple[str, str], kill: bool) -> None:
        """kill: SIGKILL the instance's process group at once, as a pod deleted with no grace period dies."""
        instance = release(self.instances, key)
        if instance is None:
            return
        pid = instance.process["pid"]
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        else:
            procs.stop(pid, group=True)
        self._save()

    def stop_all(self) -> None:
        for key in list(self.instances):
            self.stop(key, kill=False)
        if self.etcd is not None and procs.alive(self.etcd.pid):
            procs.stop(self.etcd.pid, group=True)
        self.etcd = None
        self._save()

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pids = {f"instance {i.namespace}/{i.pod}": i.process["pid"] for i in self.instances.values()}
        if self.etcd is not None:
            pids["modelmesh etcd"] = self.etcd.pid
        (self.root / FLEET_FILE).write_text(json.dumps(pids, indent=2), encoding="utf-8")
