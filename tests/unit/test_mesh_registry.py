"""The registry hands out copies of its view, never the view itself: what a caller does with one changes nothing
the registry or another caller sees. Run on an in-memory stand-in for etcd's JSON gateway (`memory_registry`,
which the vmodel tests use too)."""

from __future__ import annotations

import base64
import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from mmgitops.lab.mesh.registry import CopyRecord, InstanceRecord, ModelRecord, Registry, View, VModelRecord, kv_prefix

pytestmark = pytest.mark.unit
PREFIX = kv_prefix("modelmesh-serving", "test")
INSTANCE = InstanceRecord("127.0.0.1:1", started=1, labels=["mt:sklearn"])  # type: ignore[arg-type]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _text(b64: str) -> str:
    return base64.b64decode(b64).decode()


class MemoryEtcd:
    """The etcd v3 gateway calls the registry makes (put, deleterange, range, txn), on a dict that keeps each key's
    mod revision, so that compare-and-swap behaves as on etcd."""

    def __init__(self) -> None:
        self.kv: dict[str, str] = {}
        self.mod: dict[str, int] = {}
        self.revision = 0

    def get_url(self, path: str) -> str:
        return path

    def _header(self) -> dict[str, Any]:
        return {"header": {"revision": str(self.revision)}}

    def _range(self, key: str, end: str | None = None) -> dict[str, Any]:
        found = sorted(k for k in self.kv if (key <= k < end if end else k == key))
        # A key set by hand in a test counts as changed at the current revision.
        return {**self._header(), "kvs": [{"key": _b64(k), "value": _b64(self.kv[k]),
                                           "mod_revision": str(self.mod.get(k, self.revision))} for k in found]}

    def _write(self, key: str, value: str | None) -> dict[str, Any]:
        self.revision += 1
        if value is None:
            self.kv.pop(key, None)
            self.mod.pop(key, None)
        else:
            self.kv[key], self.mod[key] = value, self.revision
        return self._header()

    def _holds(self, compare: dict[str, Any]) -> bool:
        key = _text(compare["key"])
        if compare["target"] == "CREATE":
            return (key in self.kv) == bool(compare["create_revision"])
        return self.mod.get(key, self.revision if key in self.kv else 0) == int(compare["mod_revision"])

    def _txn(self, body: dict[str, Any]) -> dict[str, Any]:
        succeeded = all(self._holds(c) for c in body["compare"])
        responses = []
        for op in body["success" if succeeded else "failure"]:
            if "request_put" in op:
                put = op["request_put"]
                responses.append({"response_put": self._write(_text(put["key"]), _text(put["value"]))})
            else:
                responses.append({"response_range": self._range(_text(op["request_range"]["key"]))})
        return {**self._header(), **({"succeeded": True} if succeeded else {}), "responses": responses}

    def post(self, url: str, json: dict[str, Any]) -> dict[str, Any]:
        if url == "/kv/txn":
            return self._txn(json)
        key = _text(json["key"])
        if url == "/kv/put":
            return self._write(key, _text(json["value"]))
        if url == "/kv/deleterange":
            return self._write(key, None)
        if url == "/kv/range":
            return self._range(key, _text(json["range_end"]) if "range_end" in json else None)
        raise AssertionError(f"unexpected call {url}")


def memory_registry() -> tuple[Registry, MemoryEtcd]:
    """A Registry whose etcd is a dict; its view holds what it wrote itself (no watch runs)."""
    registry = Registry("http://127.0.0.1:1", PREFIX)
    registry.client = etcd = MemoryEtcd()  # type: ignore[assignment]
    return registry, etcd


def filled() -> Registry:
    registry, _ = memory_registry()
    registry.create_model("m", ModelRecord("mt:sklearn", "models/m", "{}", 1))
    registry.put_vmodel("v", VModelRecord("m", "m", "isvc"))
    registry.put_copy("m", "mm-0", CopyRecord("LOADED", 2))
    registry.put_instance("mm-0", INSTANCE, SimpleNamespace(id=1))  # type: ignore[arg-type]
    return registry


def test_changing_a_snapshot_changes_nothing_the_registry_holds():
    registry = filled()
    before = registry.snapshot()
    mine = registry.snapshot()
    mine.models["other"] = ModelRecord("mt:x")
    del mine.vmodels["v"]
    mine.instances.clear()
    mine.copies["m"]["mm-1"] = CopyRecord("LOADING", 3)
    mine.copies.pop("m")
    assert registry.snapshot() == before != mine


def test_the_narrow_reads_are_copies_too():
    registry = filled()
    registry.copies("m")["mm-1"] = CopyRecord("LOADING", 3)
    registry.instances().pop("mm-0")
    registry.vmodels_where(lambda _: True).clear()
    assert set(registry.copies("m")) == {"mm-0"} and set(registry.instances()) == {"mm-0"}
    assert registry.vmodel("v") == VModelRecord("m", "m", "isvc")


def test_records_handed_out_cannot_be_changed_in_place():
    registry = filled()
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.model("m").last_used = 5  # type: ignore[misc, union-attr]
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.snapshot().copies["m"]["mm-0"].status = "LOADING_FAILED"  # type: ignore[misc]
    assert registry.instances()["mm-0"].labels == ("mt:sklearn",)  # JSON's list, kept as a tuple


def test_a_snapshot_keeps_the_moment_it_was_taken():
    registry = filled()
    earlier = registry.snapshot()
    registry.delete_vmodel("v")
    registry.put_copy("m", "mm-1", CopyRecord("LOADING", 4))
    assert "v" in earlier.vmodels and set(earlier.copies["m"]) == {"mm-0"}
    assert "v" not in registry.snapshot().vmodels and set(registry.copies("m")) == {"mm-0", "mm-1"}


def test_the_last_copy_of_a_model_leaving_leaves_no_empty_table():
    registry = filled()
    registry.delete_copy("m", "mm-0")
    assert registry.snapshot().copies == {} and registry.copies("m") == {}


def test_vmodels_where_selects_by_record():
    registry = filled()
    registry.put_vmodel("moving", VModelRecord("m", "n", "isvc"))
    assert registry.vmodels_where(lambda v: v.active != v.target) == {"moving": VModelRecord("m", "n", "isvc")}


def test_records_read_back_from_etcd_equal_what_was_written():
    registry = filled()
    assert registry.read_model("m") == ModelRecord("mt:sklearn", "models/m", "{}", 1)
    assert registry.read_vmodel("v") == VModelRecord("m", "m", "isvc")
    assert registry.read_copies("m") == {"mm-0": CopyRecord("LOADED", 2)}
    assert registry.snapshot() == View(
        {"m": ModelRecord("mt:sklearn", "models/m", "{}", 1)}, {"v": VModelRecord("m", "m", "isvc")},
        {"mm-0": InstanceRecord("127.0.0.1:1", started=1, labels=("mt:sklearn",))},
        {"m": {"mm-0": CopyRecord("LOADED", 2)}})
