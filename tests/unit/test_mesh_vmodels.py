"""The vmodel rules (vmodels.py) on a registry over an in-memory etcd: what setVModel checks and writes, a target
becoming active once a copy of it loads, deletion, and a status read that changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import grpc
import pytest
from mmgitops.lab.mesh import vmodels
from mmgitops.lab.mesh.api import Management, mesh_pb
from mmgitops.lab.mesh.errors import MeshError
from mmgitops.lab.mesh.registry import HOUR_MS, CopyRecord, ModelRecord, Registry, VModelRecord
from mmgitops.lab.mesh.vmodels import SetVModel
from test_mesh_registry import memory_registry

pytestmark = pytest.mark.unit
NOW = 100 * HOUR_MS
VStatus = mesh_pb.VModelStatusInfo


def alive() -> set[str]:
    return {"mm-0"}


def loader(registry: Registry, outcome: str = "LOADED", error: str = "", on: str = "mm-0"
           ) -> tuple[Callable[[str, int], str], list[tuple[str, int]]]:
    """A load that leaves the copy an instance would leave, and the calls it got."""
    calls: list[tuple[str, int]] = []

    def load(model_id: str, last_used: int) -> str:
        calls.append((model_id, last_used))
        registry.put_copy(model_id, on, CopyRecord(outcome, NOW, error))
        return error
    return load, calls


def isvc(target: str, vmodel: str = "v", **options: object) -> SetVModel:
    """What modelmesh-serving asks for an InferenceService: a new concrete model, created for the vmodel."""
    fields = {"owner": "isvc", "model_type": "mt:sklearn", "model_path": f"models/{target}", "model_key": "{}",
              "auto_delete": True, "load_now": True, **options}
    return SetVModel(vmodel, target, **fields)  # type: ignore[arg-type]


def moving(registry: Registry) -> None:
    """v active on t1, moving to t2, whose load left no promotion behind."""
    vmodels.set_vmodel(registry, isvc("t1"), NOW, loader(registry)[0], alive)
    vmodels.set_vmodel(registry, isvc("t2"), NOW, loader(registry, "LOADING")[0], alive)
    registry.put_copy("t2", "mm-0", CopyRecord("LOADED", NOW))


def test_a_new_vmodel_registers_its_target_points_at_it_and_loads_it():
    registry, _ = memory_registry()
    load, calls = loader(registry)
    assert vmodels.set_vmodel(registry, isvc("t1"), NOW, load, alive) == ""
    assert registry.read_vmodel("v") == VModelRecord("t1", "t1", "isvc")
    assert registry.read_model("t1") == ModelRecord("mt:sklearn", "models/t1", "{}", NOW - HOUR_MS, True)
    assert calls == [("t1", NOW - HOUR_MS)]  # a registration with loadNow counts as used an hour ago


def test_without_load_now_a_vmodel_at_rest_loads_nothing():
    registry, _ = memory_registry()
    load, calls = loader(registry)
    vmodels.set_vmodel(registry, isvc("t1", load_now=False), NOW, load, alive)
    assert calls == [] and registry.read_model("t1").last_used == NOW - 6 * HOUR_MS  # type: ignore[union-attr]


def test_a_moved_vmodel_keeps_its_active_model_while_the_target_fails_to_load():
    registry, _ = memory_registry()
    vmodels.set_vmodel(registry, isvc("t1"), NOW, loader(registry)[0], alive)
    load, calls = loader(registry, "LOADING_FAILED", "boom")
    assert vmodels.set_vmodel(registry, isvc("t2", load_now=False), NOW, load, alive) == "boom"
    vmodel = registry.read_vmodel("v")
    assert vmodel == VModelRecord("t1", "t2", "isvc") and calls == [("t2", NOW - 6 * HOUR_MS)]
    assert vmodels.transition(vmodel, "LOADING_FAILED") == vmodels.TRANSITION_FAILED
    assert vmodels.transition(vmodel, "LOADING") == vmodels.TRANSITIONING
    assert vmodels.transition(VModelRecord("t1", "t1"), "LOADING_FAILED") == vmodels.DEFINED


def test_a_target_that_loads_becomes_active_and_the_model_made_for_the_vmodel_goes():
    registry, _ = memory_registry()
    vmodels.set_vmodel(registry, isvc("t1"), NOW, loader(registry)[0], alive)
    vmodels.set_vmodel(registry, isvc("t2"), NOW, loader(registry)[0], alive)
    assert registry.read_vmodel("v") == VModelRecord("t2", "t2", "isvc")
    assert registry.read_model("t1") is None and registry.read_model("t2") is not None


def test_a_replaced_model_registered_on_its_own_stays():
    registry, _ = memory_registry()
    registry.create_model("shared", ModelRecord("mt:sklearn", "models/shared"))
    vmodels.set_vmodel(registry, SetVModel("v", "shared", "isvc", load_now=True), NOW, loader(registry)[0], alive)
    vmodels.set_vmodel(registry, isvc("t2"), NOW, loader(registry)[0], alive)
    assert registry.read_vmodel("v") == VModelRecord("t2", "t2", "isvc") and registry.read_model("shared")


def test_a_copy_loaded_on_an_instance_out_of_the_table_promotes_nothing():
    registry, _ = memory_registry()
    vmodels.set_vmodel(registry, isvc("t1"), NOW, loader(registry)[0], alive)
    vmodels.set_vmodel(registry, isvc("t2"), NOW, loader(registry, on="gone")[0], alive)
    assert registry.read_vmodel("v") == VModelRecord("t1", "t2", "isvc")


def test_a_status_read_changes_nothing_even_when_the_target_has_loaded():
    registry, etcd = memory_registry()
    moving(registry)
    stored, view = dict(etcd.kv), registry.snapshot()
    api = Management(SimpleNamespace(registry=registry, alive=alive))  # type: ignore[arg-type]
    reply = api.getVModelStatus(mesh_pb.GetVModelStatusRequest(vModelId="v"), None)
    assert (reply.status, reply.activeModelId, reply.targetModelId) == (VStatus.TRANSITIONING, "t1", "t2")
    assert reply.targetModelStatus.status == mesh_pb.ModelStatusInfo.LOADED
    assert vmodels.read(registry, "v") == VModelRecord("t1", "t2", "isvc")
    assert etcd.kv == stored and registry.snapshot() == view


def test_a_read_for_another_owner_finds_nothing():
    registry, _ = memory_registry()
    vmodels.set_vmodel(registry, isvc("t1"), NOW, loader(registry)[0], alive)
    assert vmodels.read(registry, "v", "ksp") is None and vmodels.read(registry, "v", "isvc") is not None
    api = Management(SimpleNamespace(registry=registry, alive=alive))  # type: ignore[arg-type]
    assert api.getVModelStatus(mesh_pb.GetVModelStatusRequest(vModelId="v", owner="ksp"), None).status == \
        VStatus.NOT_FOUND


def test_a_completed_load_moves_the_vmodels_waiting_for_it_and_no_other():
    registry, _ = memory_registry()
    moving(registry)
    registry.put_vmodel("other", VModelRecord("t1", "t3", "isvc"))
    vmodels.on_loaded(registry, "t2")
    assert registry.read_vmodel("v") == VModelRecord("t2", "t2", "isvc")
    assert registry.read_vmodel("other") == VModelRecord("t1", "t3", "isvc")


def test_the_leaders_housekeeping_promotes_what_a_load_left_unpromoted():
    registry, _ = memory_registry()
    moving(registry)
    vmodels.promote_loaded(registry)
    assert registry.read_vmodel("v") == VModelRecord("t2", "t2", "isvc") and registry.read_model("t1") is None


def test_promotion_goes_by_etcd_not_by_a_stale_view():
    registry, etcd = memory_registry()
    moving(registry)
    # Another instance moved the vmodel on to t3; this one's view has not heard of it yet.
    etcd.kv[f"{registry.prefix}vmodels/v"] = '{"amid": "t1", "tmid": "t3", "o": "isvc"}'
    vmodels.on_loaded(registry, "t2")
    assert registry.read_vmodel("v") == VModelRecord("t1", "t3", "isvc") and registry.read_model("t1")


@pytest.mark.parametrize(("call", "code"), [
    (SetVModel("", "t1"), grpc.StatusCode.INVALID_ARGUMENT),
    (SetVModel("new", "t1", update_only=True), grpc.StatusCode.NOT_FOUND),
    (SetVModel("v", "t1", owner="ksp"), grpc.StatusCode.ALREADY_EXISTS),
    (SetVModel("v", "t9", expected_target="t2"), grpc.StatusCode.FAILED_PRECONDITION),
    (SetVModel("v", "unregistered"), grpc.StatusCode.NOT_FOUND),
])
def test_setvmodel_refuses_what_modelmesh_refuses_and_writes_nothing(call, code):
    registry, etcd = memory_registry()
    vmodels.set_vmodel(registry, isvc("t1"), NOW, loader(registry)[0], alive)
    stored = dict(etcd.kv)
    with pytest.raises(MeshError) as refused:
        vmodels.set_vmodel(registry, call, NOW, loader(registry)[0], alive)
    assert refused.value.code == code and etcd.kv == stored


def test_force_makes_the_target_active_at_once():
    registry, _ = memory_registry()
    vmodels.set_vmodel(registry, isvc("t1"), NOW, loader(registry)[0], alive)
    load, calls = loader(registry)
    vmodels.set_vmodel(registry, isvc("t2", force=True, load_now=False), NOW, load, alive)
    assert registry.read_vmodel("v") == VModelRecord("t2", "t2", "isvc") and calls == []


def test_deleting_a_vmodel_deletes_the_models_made_for_it_that_no_other_vmodel_uses():
    registry, _ = memory_registry()
    vmodels.set_vmodel(registry, isvc("t1", vmodel="v1"), NOW, loader(registry)[0], alive)
    vmodels.set_vmodel(registry, SetVModel("v2", "t1", "isvc"), NOW, loader(registry)[0], alive)
    vmodels.delete(registry, "v1", "isvc")
    assert registry.read_vmodel("v1") is None and registry.read_model("t1") is not None
    vmodels.delete(registry, "v2")
    assert registry.read_vmodel("v2") is None and registry.read_model("t1") is None


def test_deleting_another_owners_vmodel_changes_nothing():
    registry, etcd = memory_registry()
    vmodels.set_vmodel(registry, isvc("t1"), NOW, loader(registry)[0], alive)
    stored = dict(etcd.kv)
    vmodels.delete(registry, "v", "ksp")
    vmodels.delete(registry, "missing")
    assert etcd.kv == stored


def test_a_request_for_a_vmodel_reaches_its_active_model():
    registry, _ = memory_registry()
    moving(registry)
    assert vmodels.resolve(registry, "v") == "t1"
    with pytest.raises(MeshError, match="vmodel not found") as missing:
        vmodels.resolve(registry, "nope")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND


def test_a_request_whose_model_was_just_deleted_resolves_again_by_etcd():
    """ModelMeshApi.callModel / VModelManager.resolveVModelId: the model a first attempt found gone is never
    returned again; a strong read's active model is, else its target."""
    registry, etcd = memory_registry()
    moving(registry)
    # Another instance promoted t2 (and deleted t1); this one's view has not heard of it yet.
    etcd.kv[f"{registry.prefix}vmodels/v"] = '{"amid": "t2", "tmid": "t2", "o": "isvc"}'
    assert vmodels.resolve(registry, "v") == "t1"
    assert vmodels.resolve(registry, "v", not_found="t1") == "t2"
    assert vmodels.resolve(registry, "v", not_found="t9") == "t1"  # the view does not name the missing model
    etcd.kv[f"{registry.prefix}vmodels/v"] = '{"amid": "t1", "tmid": "t2", "o": "isvc"}'
    assert vmodels.resolve(registry, "v", not_found="t1") == "t2"  # still moving: its target
    etcd.kv[f"{registry.prefix}vmodels/v"] = '{"amid": "t1", "tmid": "t1", "o": "isvc"}'
    with pytest.raises(MeshError, match="Target model t1 of vmodel v not found") as gone:
        vmodels.resolve(registry, "v", not_found="t1")
    assert gone.value.code == grpc.StatusCode.INTERNAL
