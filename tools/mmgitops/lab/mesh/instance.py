"""One mesh instance: its cache of loaded models, the loads and evictions behind it, and where a request goes.

The instance speaks to its model server only through the `mmesh.ModelRuntime` SPI (loads, unloads,
sizes) and its data endpoint (inference), as a ModelMesh container does. Shared state lives in the
registry; this module decides, the gRPC layer (api.py) only translates. The vmodel rules are in vmodels.py,
the periodic work (publishing, the janitor, the leader's reaper) in tasks.py.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import grpc

from mmgitops.lab.mesh import cache as cache_mod
from mmgitops.lab.mesh import constraints, placement, publishing, vmodels
from mmgitops.lab.mesh.errors import MeshError, as_mesh_error
from mmgitops.lab.mesh.faults import Faults
from mmgitops.lab.mesh.metrics import MeshMetrics
from mmgitops.lab.mesh.peers import Peers
from mmgitops.lab.mesh.registry import NO_LRU, CopyRecord, InstanceRecord, ModelRecord, Registry, now_ms
from mmgitops.lab.mesh.sizing import DEFAULT_MODEL_SIZE_BYTES, cache_sizes
from mmgitops.modelmesh import stubs
from mmgitops.modelmesh.defaults import MIN_CHURN_AGE_MS, UNIT_BYTES

runtime_pb, runtime_grpc = stubs.runtime()

# ModelMesh.MAX_ITERATIONS: how many places a request or load tries before it gives up.
MAX_ITERATIONS = 8
CHURN_MESSAGE = "Cache churn threshold exceeded"


def is_churn_refusal(error: MeshError) -> bool:
    """A load another instance refused to limit churn: ModelMesh then tries the next candidate."""
    return error.code == grpc.StatusCode.INTERNAL and CHURN_MESSAGE in str(error)


@dataclass(frozen=True)
class Settings:
    instance_id: str
    endpoint: str  # this instance's gRPC address, as peers dial it
    capacity_bytes: int
    min_churn_age_ms: int = MIN_CHURN_AGE_MS
    load_timeout_ms: int = 90_000
    max_loading_concurrency: int = 2
    lease_ttl_s: int = 3
    labels: tuple[str, ...] = field(default_factory=constraints.runtime_labels)
    default_model_size_bytes: int = DEFAULT_MODEL_SIZE_BYTES
    # MM_TYPE_CONSTRAINTS_PATH: the controller's tc-config as mounted in the pod; without one, the table is built
    # from the live instances' labels.
    constraints_file: str = ""


class Instance:
    def __init__(self, settings: Settings, registry: Registry, runtime: grpc.Channel, peers: Peers,
                 metrics: MeshMetrics, faults: Faults, clock: Callable[[], int] = now_ms) -> None:
        self.settings = settings
        self.id = settings.instance_id
        self.registry = registry
        self.runtime = runtime_grpc.ModelRuntimeStub(runtime)
        self.peers = peers
        self.metrics = metrics
        self.faults = faults
        self._constraints_file = constraints.ConstraintsFile(settings.constraints_file)
        self.clock = clock
        # The MLServer adapter needs explicit unloads, so ModelMesh keeps an unload buffer (requiresUnload).
        self.sizes = cache_sizes(settings.capacity_bytes, settings.max_loading_concurrency,
                                 settings.default_model_size_bytes)
        self.cache = cache_mod.Cache(self.sizes.effective_units, settings.min_churn_age_ms, faults,
                                     self.sizes.min_space_units)
        self.lock = threading.RLock()
        self.loading: dict[str, Future[None]] = {}
        self.loads_in_progress = 0
        self.load_slots = threading.BoundedSemaphore(settings.max_loading_concurrency)
        self.lease = registry.lease(settings.lease_ttl_s)
        self.stopping = threading.Event()
        self.started = self.clock()
        self.published: InstanceRecord | None = None
        self.published_at = 0
        self.publish_lock = threading.Lock()
        registry.on_change(self._on_change)

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        from mmgitops.lab.mesh import tasks  # tasks drives this class: imported here to keep the modules acyclic

        self.registry.start()
        # Copies a previous process with this id left behind are not here any more.
        self._forget_copies()
        self.publish(force=True, first=True)
        tasks.start(self)

    def stop(self) -> None:
        """Leave the mesh: this instance's copies go from the registry, and its record with its lease."""
        self.stopping.set()
        with contextlib.suppress(Exception):  # etcd may already be gone when the whole mesh stops
            self._forget_copies()
        self.registry.stop()
        with contextlib.suppress(Exception):
            self.lease.revoke()

    def _forget_copies(self) -> None:
        """Drop this instance's copies from the registry: at startup, what a previous process with this id left;
        at stop, what it leaves."""
        for model_id, copies in self.registry.snapshot().copies.items():
            if self.id in copies:
                self.registry.delete_copy(model_id, self.id)

    # ---- the instance record ------------------------------------------------------------------
    def fresh_record(self) -> InstanceRecord:
        """ModelMesh.getFreshInstanceRecord: the live figures, the unload buffer left out."""
        with self.lock:
            return InstanceRecord(self.settings.endpoint, self.cache.capacity, self.cache.used,
                                  len(self.cache.entries), self.cache.oldest_time(), self.started,
                                  self.settings.max_loading_concurrency, self.loads_in_progress,
                                  self.settings.labels)

    def publish(self, force: bool, first: bool = False) -> bool:
        """ModelMesh.publishInstanceRecord: write the record when the rules allow; True when written."""
        if not self.publish_lock.acquire(blocking=False):
            return False  # another publish is under way (tryLock)
        try:
            now = self.clock()
            fresh = self.fresh_record()
            if not first and not publishing.should_publish(self.published, self.published_at, fresh, now,
                                                           force=force,
                                                           min_space_units=self.sizes.min_space_units):
                return False
            self.registry.put_instance(self.id, fresh, self.lease)
            self.published, self.published_at = fresh, now
            self.log_instance_stats()
            return True
        finally:
            self.publish_lock.release()

    def publish_async(self) -> None:
        """publishInstanceRecordAsync: a forced publish off the caller's thread."""
        if not self.stopping.is_set():
            threading.Thread(target=self._quiet_publish, daemon=True, name="publish").start()

    def _quiet_publish(self) -> None:
        with contextlib.suppress(Exception):  # a failed publish is retried by the periodic task
            self.publish(force=True)

    def log_instance_stats(self) -> None:
        """Metrics.logInstanceStats: the gauges show the published record, sizes in bytes."""
        record = self.published
        if record is not None:
            self.metrics.set_instance(0 if record.lru == NO_LRU else record.lru, record.capacity * UNIT_BYTES,
                                      record.used * UNIT_BYTES, record.models, now_ms=self.clock())

    def is_leader(self) -> bool:
        instances = self.registry.instances()
        return bool(instances) and min(instances) == self.id

    # ---- type constraints -------------------------------------------------------------------
    def constraint_table(self) -> dict[str, tuple[str, ...]]:
        """The mounted type-constraints file, as it is now; without one, what the controller would write: an entry
        per label of the runtimes present."""
        if self.settings.constraints_file:
            table = self._constraints_file.read()
            if table is not None:
                return table
        labels = {label for r in self.registry.instances().values() for label in r.labels}
        return constraints.constraints_for(labels | set(self.settings.labels))

    def allowed_instances(self, model_type: str) -> set[str]:
        labelled = {i: r.labels for i, r in self.registry.instances().items()}
        labelled[self.id] = self.settings.labels
        return constraints.candidates(model_type, self.constraint_table(), labelled)

    def check_type(self, model_type: str) -> set[str]:
        """verifyLocalTypeConstraintsBeforeLoad for an external request: the instances that may load the type."""
        allowed = self.allowed_instances(model_type)
        if not allowed:
            raise MeshError(grpc.StatusCode.INTERNAL,
                            constraints.no_instance_message(model_type, self.constraint_table()))
        return allowed

    # ---- loads and evictions ----------------------------------------------------------------
    def predicted_size(self, model_id: str, record: ModelRecord) -> int:
        return int(self.runtime.predictModelSize(runtime_pb.PredictModelSizeRequest(
            modelId=model_id, modelType=record.type, modelPath=record.path, modelKey=record.key),
            timeout=30).sizeInBytes)

    def record_of(self, model_id: str) -> ModelRecord:
        record = self.registry.model(model_id) or self.registry.read_model(model_id)
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
                    if not self.faults.ignore_capacity:
                        self.cache.check_churn(self.clock())
                    victims = self.cache.reserve(model_id, predicted, last_used)
                except cache_mod.ChurnRefused as exc:
                    # a ModelLoadException upstream, which ModelMeshApi.toStatus turns into INTERNAL
                    raise MeshError(grpc.StatusCode.INTERNAL, str(exc)) from exc
                except cache_mod.CacheFull as exc:
                    raise MeshError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from exc
                except cache_mod.FallThrough:
                    return False  # not loaded, and no error: the model stays NOT_LOADED until requested
                pending = self.loading[model_id] = Future()
                self.loads_in_progress += 1
                owner = True
            else:
                owner = False
        if not owner:
            pending.result()
            return True
        # A load queued into the cache forces a publish (ModelMesh's loadLocal).
        self.publish_async()
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
        finally:
            with self.lock:
                self.loads_in_progress -= 1
        return True

    def _load(self, model_id: str, record: ModelRecord, done: Future[None]) -> None:
        self.registry.put_copy(model_id, self.id, CopyRecord("LOADING", self.clock()))
        started = time.perf_counter()
        try:
            with self.load_slots:
                if self.faults.slow_load or self.faults.update_gap:
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
            self.registry.put_copy(model_id, self.id, CopyRecord("LOADING_FAILED", self.clock(), message))
            self.metrics.load_failed()
            failure = MeshError(grpc.StatusCode.DEADLINE_EXCEEDED if timed_out else grpc.StatusCode.INTERNAL, message)
            done.set_exception(failure)
            raise failure from exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        with self.lock:
            victims, resized = self.cache.loaded(model_id, size)
            self.loading.pop(model_id, None)
        for victim in victims:
            self._unload(victim.model_id, evicted_last_used=victim.last_used)
        self.registry.put_copy(model_id, self.id, CopyRecord("LOADED", self.clock()))
        with contextlib.suppress(Exception):  # the load stands; the leader's housekeeping promotes what this missed
            vmodels.on_loaded(self.registry, model_id)
        self.metrics.load(elapsed_ms, size)
        if resized:
            # The measured size changed the entry's weight: ModelMesh publishes at once.
            self.publish_async()
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
            self.metrics.evicted(self.clock() - evicted_last_used)

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
        return self.registry.copies(model_id)

    def alive(self) -> set[str]:
        return set(self.registry.instances()) | {self.id}

    def holder(self, model_id: str) -> str | None:
        """An instance with a live copy (loaded first, then loading; this one first), or None: a cache miss.
        A copy on an instance missing from the instance table is skipped, as ModelMesh skips it."""
        copies = self.copies(model_id)
        alive = self.alive()
        for wanted in ("LOADED", "LOADING"):
            holders = sorted(i for i, c in copies.items() if c.status == wanted and i in alive)
            if self.id in holders:
                return self.id
            if holders:
                return holders[0]
        return None

    def place(self, model_id: str, exclude: set[str]) -> str | None:
        """CacheMissForwardingLB.getNext: peers by their published records, this instance by its fresh one."""
        record = self.record_of(model_id)
        allowed = self.check_type(record.type)
        records = self.registry.instances()
        records[self.id] = self.fresh_record()
        return placement.choose(records, self.sizes.min_space_units, self.clock(), allowed=allowed, exclude=exclude,
                                local=self.id)

    def load(self, model_id: str, last_used: int, here: bool) -> None:
        """Load where ModelMesh would: here when a peer asked this instance, else at a live copy or a new
        placement."""
        holder = self.id if here else self.holder(model_id)
        if holder == self.id:
            self.ensure_local(model_id, last_used)
        elif holder is not None:
            self.load_elsewhere(holder, model_id, last_used)
        else:
            self.load_anywhere(model_id, last_used)

    def load_anywhere(self, model_id: str, last_used: int, attempt: Callable[[str], None] | None = None) -> str:
        """A cache miss: place a copy, trying the next candidate when one refuses to churn (ModelMesh's
        cache-miss loop); `attempt(target)` loads (and may serve) there. Returns where it succeeded."""
        def load_there(target: str) -> None:
            if target == self.id:
                self.ensure_local(model_id, last_used)
            else:
                self.load_elsewhere(target, model_id, last_used)

        tried: set[str] = set()
        refusal: MeshError | None = None
        for _ in range(MAX_ITERATIONS):
            target = self.place(model_id, tried)
            if target is None:
                break
            tried.add(target)
            try:
                (attempt or load_there)(target)
                return target
            except (MeshError, grpc.RpcError) as error:
                failure = as_mesh_error(error)
                if not is_churn_refusal(failure):
                    raise failure from None
                refusal = failure
        raise refusal or MeshError(grpc.StatusCode.UNAVAILABLE, f"no instance can load {model_id}")

    def endpoint_of(self, instance_id: str) -> str | None:
        record = self.registry.instance(instance_id)
        return record.endpoint if record else None

    # ---- registry events --------------------------------------------------------------------
    def _on_change(self, event: str, kind: str, name: str, record: object) -> None:
        if kind == "models" and event == "DELETE":
            threading.Thread(target=self.drop, args=(name,), daemon=True).start()

    def load_elsewhere(self, target: str, model_id: str, last_used: int) -> None:
        """Have a peer load the model, with the last use it would have had here."""
        endpoint = self.endpoint_of(target)
        if endpoint is None:
            raise MeshError(grpc.StatusCode.UNAVAILABLE, f"instance {target} left the mesh")
        self.peers.load_on(endpoint, model_id, last_used, self.id, self.settings.load_timeout_ms / 1000 + 5)

    def leader_metrics(self) -> None:
        view = self.registry.snapshot()
        loaded = sum(any(c.status == "LOADED" for c in view.copies.get(m, {}).values()) for m in view.models)
        failed = sum(any(c.status == "LOADING_FAILED" for c in view.copies.get(m, {}).values()) for m in view.models)
        self.metrics.set_leader(loaded, len(view.models), failed)
