"""One mesh instance: its cache of loaded models, the loads and evictions behind it, and where a request goes.

The instance speaks to its model server only through the `mmesh.ModelRuntime` SPI (loads, unloads,
sizes) and its data endpoint (inference), as a ModelMesh container does. Shared state lives in the
registry; this module decides, the gRPC layer (api.py) only translates.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import grpc

from mmgitops.mesh import cache as cache_mod
from mmgitops.mesh import stubs
from mmgitops.mesh.faults import Faults
from mmgitops.mesh.metrics import MeshMetrics
from mmgitops.mesh.peers import Peers
from mmgitops.mesh.registry import HOUR_MS, CopyRecord, InstanceRecord, ModelRecord, Registry, VModelRecord, now_ms

runtime_pb, runtime_grpc = stubs.load("model-runtime")


class MeshError(Exception):
    """A request or management call that fails with a gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Settings:
    instance_id: str
    endpoint: str  # this instance's gRPC address, as peers dial it
    capacity_bytes: int
    min_churn_age_ms: int = 300_000
    load_timeout_ms: int = 90_000
    max_loading_concurrency: int = 2
    lease_ttl_s: int = 3


class Instance:
    def __init__(self, settings: Settings, registry: Registry, runtime: grpc.Channel, peers: Peers,
                 metrics: MeshMetrics, faults: Faults) -> None:
        self.settings = settings
        self.id = settings.instance_id
        self.registry = registry
        self.runtime = runtime_grpc.ModelRuntimeStub(runtime)
        self.peers = peers
        self.metrics = metrics
        self.faults = faults
        self.cache = cache_mod.Cache(settings.capacity_bytes, settings.min_churn_age_ms, faults)
        self.lock = threading.RLock()
        self.loading: dict[str, Future[None]] = {}
        self.load_slots = threading.BoundedSemaphore(settings.max_loading_concurrency)
        self.lease = registry.lease(settings.lease_ttl_s)
        self.stopping = threading.Event()
        self.lost: set[str] = set()
        self.started = now_ms()
        self.published: InstanceRecord | None = None
        registry.on_change(self._on_change)

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.registry.start()
        self.publish()
        threading.Thread(target=self._keepalive, daemon=True, name="lease-keepalive").start()
        threading.Thread(target=self._janitor, daemon=True, name="janitor").start()

    def stop(self) -> None:
        """Leave the mesh: revoking the lease removes this instance and its copies at once."""
        self.stopping.set()
        self.registry.stop()
        # etcd may already be gone when the whole mesh stops.
        with contextlib.suppress(Exception):
            self.lease.revoke()

    def _keepalive(self) -> None:
        period = self.settings.lease_ttl_s / 3
        while not self.stopping.wait(period):
            # A missed refresh is retried at the next period.
            with contextlib.suppress(Exception):
                self.lease.refresh()
                # Requests move the LRU time without a load: peers place new copies by it, so it is kept fresh.
                if self._figures() != self.published:
                    self.publish()

    def _figures(self) -> InstanceRecord:
        with self.lock:
            lru = self.cache.lru()
            return InstanceRecord(self.settings.endpoint, self.cache.capacity * cache_mod.UNIT,
                                  self.cache.used * cache_mod.UNIT, len(self.cache.entries),
                                  lru.last_used if lru else 0, self.started)

    def publish(self) -> None:
        """This instance's figures, for placement by its peers and for its metrics."""
        record = self.published = self._figures()
        self.registry.put_instance(self.id, record, self.lease)
        self.metrics.set_instance(record.lru, record.capacity, record.used, record.models)

    def is_leader(self) -> bool:
        with self.registry.lock:
            return bool(self.registry.view.instances) and min(self.registry.view.instances) == self.id

    # ---- loads and evictions ----------------------------------------------------------------
    def predicted_size(self, model_id: str, record: ModelRecord) -> int:
        return int(self.runtime.predictModelSize(runtime_pb.PredictModelSizeRequest(
            modelId=model_id, modelType=record.type, modelPath=record.path, modelKey=record.key),
            timeout=30).sizeInBytes)

    def record_of(self, model_id: str) -> ModelRecord:
        record = self.registry.view.models.get(model_id) or self.registry.read_model(model_id)
        if record is None:
            raise MeshError(grpc.StatusCode.NOT_FOUND, f"model {model_id} not found")
        return record

    def has_copy(self, model_id: str) -> bool:
        entry = self.cache.entries.get(model_id)
        return entry is not None and entry.loaded

    def ensure_local(self, model_id: str, last_used: int) -> bool:
        """Blocks until the model is loaded here; True when this call waited for a load (a cache miss)."""
        with self.lock:
            entry = self.cache.entries.get(model_id)
            if entry is not None and entry.loaded:
                self.cache.touch(model_id, last_used)
                return False
            pending = self.loading.get(model_id)
        if pending is not None:
            pending.result()
            with self.lock:
                self.cache.touch(model_id, last_used)
            return True
        record = self.record_of(model_id)
        predicted = self.predicted_size(model_id, record)
        with self.lock:
            pending = self.loading.get(model_id)
            entry = self.cache.entries.get(model_id)
            if pending is None and entry is not None and entry.loaded:
                self.cache.touch(model_id, last_used)
                return False
            if pending is None:
                try:
                    victims = self.cache.reserve(model_id, predicted, last_used, now_ms())
                except cache_mod.CacheFull as exc:
                    raise MeshError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from exc
                pending = self.loading[model_id] = Future()
                owner = True
            else:
                owner = False
        if not owner:
            pending.result()
            return True
        try:
            for victim in victims:
                self._unload(victim.model_id, evicted_last_used=victim.last_used)
            self._load(model_id, record, pending)
        except Exception as exc:
            # Whatever broke (etcd gone, a runtime error), nobody may wait on this load for ever.
            if not pending.done():
                with self.lock:
                    self.cache.remove(model_id)
                    self.loading.pop(model_id, None)
                pending.set_exception(exc if isinstance(exc, MeshError) else MeshError(
                    grpc.StatusCode.INTERNAL, f"load of {model_id} failed: {exc}"))
            raise
        return True

    def _load(self, model_id: str, record: ModelRecord, done: Future[None]) -> None:
        self.registry.put_copy(model_id, self.id, CopyRecord("LOADING", now_ms()), self.lease)
        self.publish()
        started = time.perf_counter()
        try:
            with self.load_slots:
                if self.faults.slow_load:
                    time.sleep(1.0)
                size = self.runtime.loadModel(runtime_pb.LoadModelRequest(
                    modelId=model_id, modelType=record.type, modelPath=record.path, modelKey=record.key),
                    timeout=self.settings.load_timeout_ms / 1000).sizeInBytes
        except grpc.RpcError as exc:
            timed_out = exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            message = (f"load of {model_id} timed out after {self.settings.load_timeout_ms} ms" if timed_out
                       else f"load of {model_id} failed: {exc.details()}")
            with self.lock:
                self.cache.remove(model_id)
                self.loading.pop(model_id, None)
            self.registry.put_copy(model_id, self.id, CopyRecord("LOADING_FAILED", now_ms(), message), self.lease)
            self.metrics.load_failed()
            self.publish()
            failure = MeshError(grpc.StatusCode.DEADLINE_EXCEEDED if timed_out else grpc.StatusCode.INTERNAL, message)
            done.set_exception(failure)
            raise failure from exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        with self.lock:
            victims = self.cache.loaded(model_id, size, now_ms())
            self.loading.pop(model_id, None)
        for victim in victims:
            self._unload(victim.model_id, evicted_last_used=victim.last_used)
        self.registry.put_copy(model_id, self.id, CopyRecord("LOADED", now_ms()), self.lease)
        self.metrics.load(elapsed_ms, size)
        self.publish()
        done.set_result(None)

    def _unload(self, model_id: str, evicted_last_used: int | None = None) -> None:
        """Drop the copy from the registry first, so that no peer routes to it, then from the runtime."""
        self.registry.delete_copy(model_id, self.id)
        started = time.perf_counter()
        try:
            self.runtime.unloadModel(runtime_pb.UnloadModelRequest(modelId=model_id), timeout=30)
        except grpc.RpcError:
            self.metrics.unload_failed()
        else:
            self.metrics.unload((time.perf_counter() - started) * 1000)
        if evicted_last_used is not None:
            self.metrics.evicted(now_ms() - evicted_last_used)
        self.publish()

    def drop(self, model_id: str) -> None:
        """Unload a local copy whose model was unregistered."""
        with self.lock:
            entry = self.cache.remove(model_id)
        if entry is not None:
            self._unload(model_id)
        elif self.id in self.copies(model_id):
            self.registry.delete_copy(model_id, self.id)

    # ---- placement --------------------------------------------------------------------------
    def copies(self, model_id: str) -> dict[str, CopyRecord]:
        with self.registry.lock:
            return dict(self.registry.view.copies.get(model_id, {}))

    def target_for(self, model_id: str) -> str:
        """Where a request for the model should run: a live copy, else a placement for a new one."""
        copies = self.copies(model_id)
        with self.registry.lock:
            alive = set(self.registry.view.instances)
        for wanted in ("LOADED", "LOADING"):
            holders = sorted(i for i, c in copies.items() if c.status == wanted and i in alive)
            if self.id in holders:
                return self.id
            if holders:
                return holders[0]
        return self.place(model_id)

    def place(self, model_id: str) -> str:
        record = self.record_of(model_id)
        size = self.predicted_size(model_id, record)
        with self.registry.lock:
            instances = dict(self.registry.view.instances)
        return cache_mod.place(instances, size) or self.id

    def endpoint_of(self, instance_id: str) -> str | None:
        with self.registry.lock:
            record = self.registry.view.instances.get(instance_id)
        return record.endpoint if record else None

    # ---- registry events --------------------------------------------------------------------
    def _on_change(self, event: str, kind: str, name: str, record: object) -> None:
        if kind == "models" and event == "DELETE":
            threading.Thread(target=self.drop, args=(name,), daemon=True).start()
        elif event == "LOST":
            self.lost.add(name.rpartition("/")[0])

    def _janitor(self) -> None:
        """The leader reloads models whose only copies went with a dead instance, moves vmodels to their loaded
        targets, and keeps the leader-only metrics."""
        while not self.stopping.wait(1.0):
            if not self.is_leader():
                self.metrics.clear_leader()
                self.lost.clear()
                continue
            self._leader_metrics()
            self._promote_loaded_targets()
            for model_id in list(self.lost):
                self.lost.discard(model_id)
                if self.copies(model_id) or model_id not in self.registry.view.models:
                    continue
                target = self.place(model_id)
                try:
                    if target == self.id:
                        self.ensure_local(model_id, now_ms() - HOUR_MS)
                    else:
                        self.load_elsewhere(target, model_id, now_ms() - HOUR_MS)
                except (MeshError, grpc.RpcError):
                    continue

    def load_elsewhere(self, target: str, model_id: str, last_used: int) -> None:
        """Have a peer load the model, with the last use it would have had here (a registration's is an hour
        ago, so that an unused model stays first to go wherever it lands)."""
        endpoint = self.endpoint_of(target)
        if endpoint is None:
            raise MeshError(grpc.StatusCode.UNAVAILABLE, f"instance {target} left the mesh")
        self.peers.load_on(endpoint, model_id, last_used, self.id, self.settings.load_timeout_ms / 1000 + 5)

    def promote(self, vmodel_id: str, vmodel: VModelRecord) -> VModelRecord:
        """A vmodel whose target has loaded makes it active; a replaced model created for it is deleted."""
        if vmodel.active == vmodel.target:
            return vmodel
        previous = self.registry.read_model(vmodel.active)
        promoted = VModelRecord(vmodel.target, vmodel.target, vmodel.owner)
        self.registry.put_vmodel(vmodel_id, promoted)
        if previous and previous.auto_delete:
            self.registry.delete_model(vmodel.active)
        return promoted

    def _promote_loaded_targets(self) -> None:
        with self.registry.lock:
            pending = {v: r for v, r in self.registry.view.vmodels.items() if r.active != r.target}
        for vmodel_id, vmodel in pending.items():
            if any(c.status == "LOADED" for c in self.copies(vmodel.target).values()):
                self.promote(vmodel_id, vmodel)

    def _leader_metrics(self) -> None:
        with self.registry.lock:
            view = self.registry.view
            loaded = sum(any(c.status == "LOADED" for c in view.copies.get(m, {}).values()) for m in view.models)
            failed = sum(any(c.status == "LOADING_FAILED" for c in view.copies.get(m, {}).values())
                         for m in view.models)
            managed = len(view.models)
        self.metrics.set_leader(loaded, managed, failed)
