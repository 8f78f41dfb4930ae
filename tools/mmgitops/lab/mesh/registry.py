"""The mesh's shared state in etcd, and each process's live view of it.

Keys under the mesh's prefix:
  models/<modelId>              registered model: type, path, key, initial last use
  vmodels/<vModelId>            alias: owner, active and target model ids
  instances/<instanceId>        a live instance: endpoint and its last PUBLISHED cache figures (on its lease)
  copies/<modelId>/<instanceId> a copy's state: LOADING, LOADED or LOADING_FAILED (no lease)

Registrations and copies have no lease, so they outlive every instance. Only the instance record is on
the instance's lease (ModelMesh's session node): a killed instance leaves the instance table when the
lease expires, but its copies stay in the model records until the leader's registry reaper prunes them
(reaper.py), as ModelMesh's do (ModelMesh.pruneModelRegistry).
The view is filled by one range read and kept current by a watch from the next revision, so the
request path never waits on etcd. The watch thread changes the view while requests read it, so the view stays
private: callers get copies, taken under the registry's lock (`snapshot`, `copies`, `instances`, `model`, ...),
and the records in them are frozen.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import etcd3gw
from etcd3gw.lease import Lease

HOUR_MS = 3_600_000
# ModelMesh publishes "no model loaded" as an LRU time of Long.MAX_VALUE.
NO_LRU = 2**63 - 1
# ModelMesh.LASTUSED_AGE_ON_ADD_MS: a registration counts as used this long ago (6x without loadNow).
LASTUSED_AGE_ON_ADD_MS = HOUR_MS


def now_ms() -> int:
    return int(time.time() * 1000)


def initial_last_used(requested: int, load_now: bool, now: int) -> int:
    """ModelMesh.registerModel's last-used time for a new model record."""
    if requested >= now:
        return now
    if requested > 0:
        return requested
    return now - LASTUSED_AGE_ON_ADD_MS * (1 if load_now else 6)


@dataclass(frozen=True)
class ModelRecord:
    type: str
    path: str = ""
    key: str = ""
    last_used: int = 0
    auto_delete: bool = False


@dataclass(frozen=True)
class VModelRecord:
    active: str
    target: str
    owner: str = ""


@dataclass(frozen=True)
class CopyRecord:
    status: str  # LOADING | LOADED | LOADING_FAILED
    time: int
    error: str = ""


@dataclass(frozen=True)
class InstanceRecord:
    """ModelMesh's InstanceRecord: what an instance publishes about itself; sizes in 8 KiB units."""

    endpoint: str
    capacity: int = 0  # units, without the unload buffer
    used: int = 0  # units, without the unload buffer
    models: int = 0  # cache entries, loading ones included
    lru: int = NO_LRU  # epoch ms of the least recently used entry's last use
    started: int = field(default_factory=now_ms)
    loading_threads: int = 0
    loading: int = 0  # loads in progress
    labels: tuple[str, ...] = ()
    shutting_down: bool = False

    def __post_init__(self) -> None:
        # JSON gives a list; a tuple keeps the frozen record whole.
        object.__setattr__(self, "labels", tuple(self.labels))


KINDS: dict[str, type] = {"models": ModelRecord, "vmodels": VModelRecord, "instances": InstanceRecord,
                          "copies": CopyRecord}


@dataclass
class View:
    """The registry's tables; a View a caller holds is its own copy."""

    models: dict[str, ModelRecord] = field(default_factory=dict)
    vmodels: dict[str, VModelRecord] = field(default_factory=dict)
    instances: dict[str, InstanceRecord] = field(default_factory=dict)
    copies: dict[str, dict[str, CopyRecord]] = field(default_factory=dict)

    def copy(self) -> View:
        # The records are frozen: copying the tables is enough.
        return View(dict(self.models), dict(self.vmodels), dict(self.instances),
                    {model_id: dict(by_instance) for model_id, by_instance in self.copies.items()})


class Registry:
    def __init__(self, endpoint: str, prefix: str = "/mmesh/") -> None:
        host, _, port = endpoint.removeprefix("http://").rpartition(":")
        self._connect = lambda: etcd3gw.Etcd3Client(host=host, port=int(port), timeout=5, api_path="/v3/")
        self.client = self._connect()
        self.prefix = prefix
        self._view = View()
        self._lock = threading.RLock()
        self.revision = 0
        self._watcher: Any = None
        self._listeners: list[Callable[[str, str, str, Any], None]] = []
        self._key_revisions: dict[str, int] = {}

    # ---- writes: each is applied to this process's view at once, so it reads its own writes ----
    def _put(self, kind: str, name: str, record: Any, lease: Lease | None = None) -> None:
        key, value = f"{self.prefix}{kind}/{name}", json.dumps(asdict(record))
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease is not None:
            body["lease"] = lease.id
        result = self.client.post(self.client.get_url("/kv/put"), json=body)
        self._apply_own("PUT", key, value, result)

    def _delete(self, kind: str, name: str) -> None:
        key = f"{self.prefix}{kind}/{name}"
        result = self.client.post(self.client.get_url("/kv/deleterange"), json={"key": _b64(key)})
        self._apply_own("DELETE", key, "", result)

    def _apply_own(self, event: str, key: str, value: str, result: dict[str, Any]) -> None:
        with self._lock:
            self._apply(event, key, value, int(result["header"]["revision"]))

    def create_model(self, model_id: str, record: ModelRecord) -> bool:
        """False when the id is taken (registration is first-writer-wins, as in ModelMesh)."""
        created = bool(self.client.create(f"{self.prefix}models/{model_id}", json.dumps(asdict(record))))
        if created:
            with self._lock:
                self._view.models[model_id] = record
        return created

    def put_model(self, model_id: str, record: ModelRecord) -> None:
        self._put("models", model_id, record)

    def delete_model(self, model_id: str) -> None:
        self._delete("models", model_id)

    def put_vmodel(self, vmodel_id: str, record: VModelRecord) -> None:
        self._put("vmodels", vmodel_id, record)

    def delete_vmodel(self, vmodel_id: str) -> None:
        self._delete("vmodels", vmodel_id)

    def put_copy(self, model_id: str, instance_id: str, record: CopyRecord) -> None:
        self._put("copies", f"{model_id}/{instance_id}", record)

    def delete_copy(self, model_id: str, instance_id: str) -> None:
        self._delete("copies", f"{model_id}/{instance_id}")

    def put_instance(self, instance_id: str, record: InstanceRecord, lease: Lease) -> None:
        self._put("instances", instance_id, record, lease)

    def lease(self, ttl: int) -> Lease:
        return self.client.lease(ttl)

    # ---- reads straight from etcd: for the management API, which must see every instance's writes ----
    def _range(self, key: str, prefix: bool = False) -> list[tuple[str, str]]:
        body = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(_prefix_end(key))
        result = self.client.post(self.client.get_url("/kv/range"), json=body)
        return [(_unb64(kv["key"]), _unb64(kv.get("value", ""))) for kv in result.get("kvs", [])]

    def read_model(self, model_id: str) -> ModelRecord | None:
        found = self._range(f"{self.prefix}models/{model_id}")
        return ModelRecord(**json.loads(found[0][1])) if found else None

    def read_vmodel(self, vmodel_id: str) -> VModelRecord | None:
        found = self._range(f"{self.prefix}vmodels/{vmodel_id}")
        return VModelRecord(**json.loads(found[0][1])) if found else None

    def read_copies(self, model_id: str) -> dict[str, CopyRecord]:
        found = self._range(f"{self.prefix}copies/{model_id}/", prefix=True)
        return {key.rpartition("/")[2]: CopyRecord(**json.loads(value)) for key, value in found}

    # ---- the view: copies only ------------------------------------------------------------
    def snapshot(self) -> View:
        """Every table as this process knows it now."""
        with self._lock:
            return self._view.copy()

    def model(self, model_id: str) -> ModelRecord | None:
        with self._lock:
            return self._view.models.get(model_id)

    def vmodel(self, vmodel_id: str) -> VModelRecord | None:
        with self._lock:
            return self._view.vmodels.get(vmodel_id)

    def vmodels_where(self, wanted: Callable[[VModelRecord], bool]) -> dict[str, VModelRecord]:
        with self._lock:
            return {v: r for v, r in self._view.vmodels.items() if wanted(r)}

    def instance(self, instance_id: str) -> InstanceRecord | None:
        with self._lock:
            return self._view.instances.get(instance_id)

    def instances(self) -> dict[str, InstanceRecord]:
        """The instance table: the live instances and what each published last."""
        with self._lock:
            return dict(self._view.instances)

    def copies(self, model_id: str) -> dict[str, CopyRecord]:
        """A model's copies by instance id."""
        with self._lock:
            return dict(self._view.copies.get(model_id, {}))

    # ---- following etcd ------------------------------------------------------------------
    def on_change(self, listener: Callable[[str, str, str, Any], None]) -> None:
        """listener(event, kind, name, record): event PUT or DELETE."""
        self._listeners.append(listener)

    def start(self) -> None:
        result = self.client.post(self.client.get_url("/kv/range"), json={
            "key": _b64(self.prefix), "range_end": _b64(_prefix_end(self.prefix))})
        with self._lock:
            self.revision = int(result["header"]["revision"])
            for item in result.get("kvs", []):
                self._apply("PUT", _unb64(item["key"]), _unb64(item.get("value", "")), int(item["mod_revision"]))
        watcher_client = self._connect()
        self._watcher = watcher_client.watch_prefix(self.prefix, start_revision=self.revision + 1)
        threading.Thread(target=self._follow, args=(self._watcher[0],), daemon=True, name="registry-watch").start()

    def stop(self) -> None:
        if self._watcher:
            self._watcher[1]()

    def _follow(self, events: Any) -> None:
        for event in events:
            kv = event["kv"]
            with self._lock:
                self._apply(event.get("type", "PUT"), kv["key"].decode(), kv.get("value", b"").decode(),
                            int(kv.get("mod_revision", 0)))

    def _apply(self, event: str, key: str, value: str, revision: int) -> None:
        kind, _, name = key.removeprefix(self.prefix).partition("/")
        if kind not in KINDS or revision <= self._key_revisions.get(key, 0):
            return
        self._key_revisions[key] = revision
        self.revision = max(self.revision, revision)
        record = KINDS[kind](**json.loads(value)) if event == "PUT" else None
        if kind == "copies":
            model_id, _, instance_id = name.rpartition("/")
            copies = self._view.copies.setdefault(model_id, {})
            if record is not None:
                copies[instance_id] = record
            else:
                copies.pop(instance_id, None)
                if not copies:
                    self._view.copies.pop(model_id, None)
        else:
            table: dict[str, Any] = getattr(self._view, kind)
            if record is not None:
                table[name] = record
            else:
                table.pop(name, None)
        for listener in self._listeners:
            listener(event, kind, name, record)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
