"""The mesh's shared state in etcd, laid out as ModelMesh lays it out, and each process's live view of it.

The mesh's prefix is the one ModelMesh writes under and the modelmesh-serving controller watches (`kv_prefix`):
`<root_prefix>[/mm_ns/<namespace>]/mm/<service>/`. Under it, the tables ModelMesh.initialize creates, each value
the JSON of ModelMesh's record (kv-utils JsonSerializer: Jackson names, fields at their default left out):
  registry/<modelId>      ModelRecord: type, mPath, encKey, lu, autoDel, and the model's copies as ModelMesh keeps
                          them: instanceIds {instance: load start}, failedIn {instance: failure time}, fails
                          {instance: {msg}}; plus loaded {instance: load end}, which only this mesh writes
  vmodels/<vModelId>      VModelRecord: o (owner), amid (active model), tmid (target model)
  instances/<instanceId>  InstanceRecord: what the instance last PUBLISHED (cap, used, count, lruTime, ...), on its
                          lease (ModelMesh's session node); endpoint is this mesh's own field

The controller watches registry/ (keys only) and vmodels/ (for "o"), and reconciles the owner's InferenceService on
each change. So a copy lives in its model's record, as in ModelMesh: a load queued, loaded, failed, unloaded,
evicted or pruned rewrites registry/<modelId>, by compare-and-swap on the key's mod revision (ModelMesh's
registry.conditionalSetAndGet), and a copy of a model deleted meanwhile is dropped, as ModelMesh drops it.

Registrations have no lease, so they and the copies in them outlive every instance. Only the instance record is on
the instance's lease: a killed instance leaves the instance table when the lease expires, but its copies stay in
the model records until the leader's registry reaper prunes them (reaper.py), as ModelMesh's do.
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
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

import etcd3gw
from etcd3gw.lease import Lease

from mmgitops.lab.mesh import etcdauth

HOUR_MS = 3_600_000
# ModelMesh publishes "no model loaded" as an LRU time of Long.MAX_VALUE.
NO_LRU = 2**63 - 1
# ModelMesh.LASTUSED_AGE_ON_ADD_MS: a registration counts as used this long ago (6x without loadNow).
LASTUSED_AGE_ON_ADD_MS = HOUR_MS
# The controller gives every runtime's ModelMesh MM_KVSTORE_PREFIX "mm" (modelmesh-serving
# controllers/modelmesh/modelmesh.go ModelMeshEtcdPrefix) and MM_SERVICE_NAME, its Service's name.
KVSTORE_PREFIX = "mm"
SERVICE_NAME = "modelmesh-serving"
# ModelMesh's table names (ModelMesh.initialize), and the view's table each fills.
REGISTRY, VMODELS, INSTANCES = "registry", "vmodels", "instances"
TABLES = {REGISTRY: "models", VMODELS: "vmodels", INSTANCES: "instances"}
# The model record's fields that hold copies: ModelRecord's instanceIds, failedIn, fails; then this mesh's own.
COPY_FIELDS = ("instanceIds", "failedIn", "fails", "loaded")


def now_ms() -> int:
    return int(time.time() * 1000)


def initial_last_used(requested: int, load_now: bool, now: int) -> int:
    """ModelMesh.registerModel's last-used time for a new model record."""
    if requested >= now:
        return now
    if requested > 0:
        return requested
    return now - LASTUSED_AGE_ON_ADD_MS * (1 if load_now else 6)


def kv_prefix(root_prefix: str, namespace: str = "", service: str = SERVICE_NAME) -> str:
    """Where a mesh's tables live: the etcd Secret's root_prefix, `/mm_ns/<namespace>` for a namespace other than
    the controller's own (the controller writes that into the namespace's copy of the Secret, pkg/mmesh/etcd_secret.go
    addData, and watches there, modelmesh_events.go refreshWatches), then ModelMesh's
    ZKPaths.makePath(KV_STORE_PREFIX, serviceName). namespace "" for the controller's namespace or none."""
    root = f"{root_prefix}/mm_ns/{namespace}" if namespace else root_prefix
    return f"{root}/{KVSTORE_PREFIX}/{service}/"


def _json(name: str, **options: Any) -> Any:
    """A record field stored under ModelMesh's JSON name."""
    return field(metadata={"json": name}, **options)


@dataclass(frozen=True)
class ModelRecord:
    """A registration: ModelMesh's ModelRecord without its copies, which the view keeps apart (`copies`)."""

    type: str = _json("type")
    path: str = _json("mPath", default="")
    key: str = _json("encKey", default="")
    last_used: int = _json("lu", default=0)
    auto_delete: bool = _json("autoDel", default=False)


@dataclass(frozen=True)
class VModelRecord:
    active: str = _json("amid")
    target: str = _json("tmid")
    owner: str = _json("o", default="")


@dataclass(frozen=True)
class CopyRecord:
    """A copy as the view shows it; stored in its model's record (`_with_copy`)."""

    status: str  # LOADING | LOADED | LOADING_FAILED
    time: int
    error: str = ""


@dataclass(frozen=True)
class InstanceRecord:
    """ModelMesh's InstanceRecord: what an instance publishes about itself; sizes in 8 KiB units."""

    # ModelMesh's peers find each other through litelinks' own registration; this mesh keeps the address here.
    endpoint: str = _json("endpoint")
    capacity: int = _json("cap", default=0)  # units, without the unload buffer
    used: int = _json("used", default=0)  # units, without the unload buffer
    models: int = _json("count", default=0)  # cache entries, loading ones included
    lru: int = _json("lruTime", default=NO_LRU)  # epoch ms of the least recently used entry's last use
    started: int = _json("startTime", default_factory=now_ms)
    loading_threads: int = _json("lThreads", default=0)
    loading: int = _json("lInProg", default=0)  # loads in progress
    labels: tuple[str, ...] = _json("labels", default=())
    shutting_down: bool = _json("shutdown", default=False)

    def __post_init__(self) -> None:
        # JSON gives a list; a tuple keeps the frozen record whole.
        object.__setattr__(self, "labels", tuple(self.labels))


RECORDS: dict[str, type] = {"models": ModelRecord, "vmodels": VModelRecord, "instances": InstanceRecord}


def _left_out(spec: Field[Any], value: Any) -> bool:
    """Jackson's NON_DEFAULT inclusion, as kv-utils sets it: an empty value at its default is not written."""
    return spec.default is not MISSING and not value and value == spec.default


def encode(record: Any) -> dict[str, Any]:
    """A record as ModelMesh's JSON."""
    return {spec.metadata["json"]: list(value) if isinstance(value, tuple) else value
            for spec in fields(record) if not _left_out(spec, value := getattr(record, spec.name))}


def decode(cls: type, doc: Mapping[str, Any]) -> Any:
    """A record from ModelMesh's JSON; fields this mesh does not model are skipped (ModelMesh keeps them)."""
    names = {spec.metadata["json"]: spec.name for spec in fields(cls)}
    return cls(**{names[name]: value for name, value in doc.items() if name in names})


def copies_in(doc: Mapping[str, Any]) -> dict[str, CopyRecord]:
    """A model record's copies by instance id: those in instanceIds (loaded when `loaded` has them, else loading)
    and those in failedIn."""
    loaded, fails = doc.get("loaded", {}), doc.get("fails", {})
    copies = {iid: CopyRecord("LOADING_FAILED", when, fails.get(iid, {}).get("msg", ""))
              for iid, when in doc.get("failedIn", {}).items()}
    for iid, started in doc.get("instanceIds", {}).items():
        copies[iid] = CopyRecord("LOADED", loaded[iid]) if iid in loaded else CopyRecord("LOADING", started)
    return copies


def _with_copy(doc: Mapping[str, Any], instance_id: str, copy: CopyRecord | None) -> dict[str, Any]:
    """The model record after one copy changed, edited as ModelMesh edits it: a queued load puts the instance in
    instanceIds with the load's start and out of the failures (ModelMesh.loadLocal), a failure moves it to failedIn
    and fails (ModelRecord.addLoadFailure), an unload takes it out of both (deregisterModel). Every other field is
    kept, as ModelMesh's JsonExtensible records keep fields they do not know."""
    maps = {name: dict(doc.get(name, {})) for name in COPY_FIELDS}
    started = maps["instanceIds"].get(instance_id)
    for by_instance in maps.values():
        by_instance.pop(instance_id, None)
    if copy is not None and copy.status == "LOADING_FAILED":
        maps["failedIn"][instance_id] = copy.time
        if copy.error:
            maps["fails"][instance_id] = {"msg": copy.error}
    elif copy is not None:
        # A loaded copy keeps its load's start in instanceIds, where ModelMesh keeps it; the end goes to `loaded`.
        loaded = copy.status == "LOADED"
        maps["instanceIds"][instance_id] = started if loaded and started is not None else copy.time
        if loaded:
            maps["loaded"][instance_id] = copy.time
    rest = {name: value for name, value in doc.items() if name not in maps}
    return rest | {name: by_instance for name, by_instance in maps.items() if by_instance}


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


Stored = tuple[dict[str, Any], int]  # a model record as etcd holds it, and its mod revision


class Registry:
    def __init__(self, endpoint: str, prefix: str = kv_prefix(""), connection_file: str = "") -> None:
        """connection_file: the mesh's etcd_connection, whose userid and password (if any) authenticate."""
        host, _, port = endpoint.removeprefix("http://").rpartition(":")
        login = etcdauth.credentials(connection_file)

        def connect() -> etcd3gw.Etcd3Client:
            session = etcdauth.AuthSession(f"http://{host}:{port}", *login) if login else None
            return etcd3gw.Etcd3Client(host=host, port=int(port), timeout=5, api_path="/v3/", session=session)
        self._connect = connect
        self.client = self._connect()
        self.prefix = prefix
        self._view = View()
        # The model records as stored, so that a copy's change swaps against what this process saw last.
        self._stored: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self.revision = 0
        self._watcher: Any = None
        self._listeners: list[Callable[[str, str, str, Any], None]] = []
        self._key_revisions: dict[str, int] = {}

    def _key(self, table: str, name: str) -> str:
        return f"{self.prefix}{table}/{name}"

    # ---- writes: each is applied to this process's view at once, so it reads its own writes ----
    def _put(self, table: str, name: str, record: Any, lease: Lease | None = None) -> None:
        key, value = self._key(table, name), json.dumps(encode(record))
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease is not None:
            body["lease"] = lease.id
        result = self.client.post(self.client.get_url("/kv/put"), json=body)
        self._apply_own("PUT", key, value, result)

    def _delete(self, table: str, name: str) -> None:
        key = self._key(table, name)
        result = self.client.post(self.client.get_url("/kv/deleterange"), json={"key": _b64(key)})
        self._apply_own("DELETE", key, "", result)

    def _apply_own(self, event: str, key: str, value: str, result: dict[str, Any]) -> None:
        with self._lock:
            self._apply(event, key, value, int(result["header"]["revision"]))

    def _put_if(self, key: str, compare: dict[str, Any], value: str) -> dict[str, Any]:
        """One transaction: put the value when the comparison holds, else read the key."""
        return self.client.post(self.client.get_url("/kv/txn"), json={
            "compare": [{"key": _b64(key), "result": "EQUAL", **compare}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
            "failure": [{"request_range": {"key": _b64(key)}}]})

    def create_model(self, model_id: str, record: ModelRecord) -> bool:
        """False when the id is taken (registration is first-writer-wins, as in ModelMesh)."""
        key, value = self._key(REGISTRY, model_id), json.dumps(encode(record))
        result = self._put_if(key, {"target": "CREATE", "create_revision": 0}, value)
        if result.get("succeeded"):
            self._apply_own("PUT", key, value, result)
        return bool(result.get("succeeded"))

    def delete_model(self, model_id: str) -> None:
        self._delete(REGISTRY, model_id)

    def put_vmodel(self, vmodel_id: str, record: VModelRecord) -> None:
        self._put(VMODELS, vmodel_id, record)

    def delete_vmodel(self, vmodel_id: str) -> None:
        self._delete(VMODELS, vmodel_id)

    def put_copy(self, model_id: str, instance_id: str, record: CopyRecord) -> None:
        self._swap_copy(model_id, instance_id, record)

    def delete_copy(self, model_id: str, instance_id: str) -> None:
        self._swap_copy(model_id, instance_id, None)

    def _swap_copy(self, model_id: str, instance_id: str, copy: CopyRecord | None) -> None:
        """Rewrite the model's record with the copy changed, compare-and-swap on its mod revision until it holds
        (ModelMesh's conditionalSetAndGet loop). Nothing when the model is not registered, as ModelMesh finds a
        model deleted while loading; no write when the record already says so (deregisterModel's early return)."""
        key = self._key(REGISTRY, model_id)
        with self._lock:
            doc = self._stored.get(model_id)
            current, fresh = ((doc, self._key_revisions[key]), False) if doc is not None else (None, True)
        if current is None:
            current = self._read_stored(key)
        while current is not None:
            doc, revision = current
            changed = _with_copy(doc, instance_id, copy)
            if changed == doc:
                if fresh:
                    return
                # The view may be behind etcd: only etcd's own record can say that nothing is to change.
                current, fresh = self._read_stored(key), True
                continue
            value = json.dumps(changed)
            result = self._put_if(key, {"target": "MOD", "mod_revision": revision}, value)
            if result.get("succeeded"):
                self._apply_own("PUT", key, value, result)
                return
            current, fresh = _stored(result["responses"][0].get("response_range", {})), True

    def put_instance(self, instance_id: str, record: InstanceRecord, lease: Lease) -> None:
        self._put(INSTANCES, instance_id, record, lease)

    def lease(self, ttl: int) -> Lease:
        return self.client.lease(ttl)

    # ---- reads straight from etcd: for the management API, which must see every instance's writes ----
    def _range(self, key: str, prefix: bool = False) -> dict[str, Any]:
        body = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(_prefix_end(key))
        return self.client.post(self.client.get_url("/kv/range"), json=body)

    def _read_stored(self, key: str) -> Stored | None:
        return _stored(self._range(key))

    def read_model(self, model_id: str) -> ModelRecord | None:
        found = self._read_stored(self._key(REGISTRY, model_id))
        return decode(ModelRecord, found[0]) if found else None

    def read_vmodel(self, vmodel_id: str) -> VModelRecord | None:
        found = _stored(self._range(self._key(VMODELS, vmodel_id)))
        return decode(VModelRecord, found[0]) if found else None

    def read_copies(self, model_id: str) -> dict[str, CopyRecord]:
        found = self._read_stored(self._key(REGISTRY, model_id))
        return copies_in(found[0]) if found else {}

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
        """listener(event, table, name, record): event PUT or DELETE; table models, vmodels or instances (the view's
        names); a model's record is its registration, the copies in it changed or not."""
        self._listeners.append(listener)

    def start(self) -> None:
        result = self._range(self.prefix, prefix=True)
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
        # Other keys under the prefix (ModelMesh's config/ and leaderLatch/, say) are not the view's.
        table, _, name = key.removeprefix(self.prefix).partition("/")
        kind = TABLES.get(table)
        if kind is None or not name or revision <= self._key_revisions.get(key, 0):
            return
        self._key_revisions[key] = revision
        self.revision = max(self.revision, revision)
        doc = json.loads(value) if event == "PUT" else None
        record = None if doc is None else decode(RECORDS[kind], doc)
        rows: dict[str, Any] = getattr(self._view, kind)
        if record is None:
            rows.pop(name, None)
        else:
            rows[name] = record
        if table == REGISTRY:
            self._apply_copies(name, doc)
        for listener in self._listeners:
            listener(event, kind, name, record)

    def _apply_copies(self, model_id: str, doc: dict[str, Any] | None) -> None:
        copies = copies_in(doc) if doc is not None else {}
        if doc is None:
            self._stored.pop(model_id, None)
        else:
            self._stored[model_id] = doc
        if copies:
            self._view.copies[model_id] = copies
        else:
            self._view.copies.pop(model_id, None)


def _stored(result: Mapping[str, Any]) -> Stored | None:
    """The first key of a range result as (record, mod revision), or None when there is none."""
    kvs = result.get("kvs", [])
    return (json.loads(_unb64(kvs[0].get("value", ""))), int(kvs[0]["mod_revision"])) if kvs else None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
