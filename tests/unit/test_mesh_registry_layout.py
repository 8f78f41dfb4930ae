"""What the modelmesh-serving controller's etcd watch sees of the embedded mesh (pkg/mmesh/modelmesh_events.go
refreshWatches): its keys where the controller looks, the vmodel's owner in "o", and a change of the model's
registry key at every change of a copy, as ModelMesh keeps copies in its ModelRecord."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from mmgitops.lab.mesh import vmodels
from mmgitops.lab.mesh.registry import CopyRecord, InstanceRecord, ModelRecord, Registry, kv_prefix
from mmgitops.lab.mesh.vmodels import SetVModel
from mmgitops.modelmesh.ids import ISVC_OWNER, concrete_id
from test_mesh_registry import PREFIX, MemoryEtcd, memory_registry

pytestmark = pytest.mark.unit
MODEL = concrete_id("isvc-a", "models/a")
CONTROLLER_NAMESPACE = "redhat-ods-applications"


def controller_service_prefix(root_prefix: str, namespace: str, controller_namespace: str) -> str:
    """refreshWatches' servicePrefix, transcribed: the root prefix, /mm_ns/<ns> unless the controller's own
    namespace, then ModelMeshEtcdPrefix "mm" and the Service's name."""
    rp = root_prefix if namespace == controller_namespace else f"{root_prefix}/mm_ns/{namespace}"
    return f"{rp}/mm/modelmesh-serving"


def controller_model_event(key: str) -> tuple[str, str] | None:
    """The (InferenceService, source) the controller reconciles for a registry/ key, by its parse of the model id
    after the prefix; None for a key it ignores."""
    model_id = key.removeprefix(f"{PREFIX}registry/")
    owner_at = model_id.rfind("__") + 2
    hash_at = len(model_id) - 11
    if owner_at > 2 and hash_at > owner_at and model_id[hash_at] == "-":
        return model_id[:owner_at - 2], model_id[owner_at:hash_at]
    return None


def registered() -> tuple[Registry, MemoryEtcd, str]:
    registry, etcd = memory_registry()
    assert registry.create_model(MODEL, ModelRecord("mt:sklearn", "models/a", "{}", 1, True))
    return registry, etcd, f"{PREFIX}registry/{MODEL}"


@pytest.mark.parametrize("namespace", [CONTROLLER_NAMESPACE, "user-ns"])
def test_a_namespaces_mesh_writes_under_the_prefix_the_controller_watches(namespace):
    mine = kv_prefix("modelmesh-serving", "" if namespace == CONTROLLER_NAMESPACE else namespace)
    assert mine == controller_service_prefix("modelmesh-serving", namespace, CONTROLLER_NAMESPACE) + "/"
    assert kv_prefix("modelmesh-serving", "user-ns") == "modelmesh-serving/mm_ns/user-ns/mm/modelmesh-serving/"


def test_the_vmodel_record_names_its_owner_in_o():
    registry, etcd = memory_registry()
    call = SetVModel("isvc-a", MODEL, ISVC_OWNER, "mt:sklearn", "models/a", "{}", auto_delete=True)
    vmodels.set_vmodel(registry, call, 100, lambda *_: "", set)
    stored = json.loads(etcd.kv[f"{PREFIX}vmodels/isvc-a"])
    assert stored == {"o": ISVC_OWNER, "amid": MODEL, "tmid": MODEL}  # VModelRecord's @JsonProperty names


def test_every_change_of_a_copy_rewrites_the_models_registry_key():
    registry, etcd, key = registered()
    assert controller_model_event(key) == ("isvc-a", ISVC_OWNER)
    seen = [etcd.mod[key]]
    for change in (lambda: registry.put_copy(MODEL, "mm-0", CopyRecord("LOADING", 10)),
                   lambda: registry.put_copy(MODEL, "mm-0", CopyRecord("LOADED", 20)),
                   lambda: registry.delete_copy(MODEL, "mm-0"),  # unloaded or evicted
                   lambda: registry.put_copy(MODEL, "mm-1", CopyRecord("LOADING_FAILED", 30, "boom"))):
        change()
        seen.append(etcd.mod[key])
    assert seen == sorted(set(seen))  # a new mod revision each time: a watch event each time
    assert json.loads(etcd.kv[key]) == {"type": "mt:sklearn", "mPath": "models/a", "encKey": "{}", "lu": 1,
                                        "autoDel": True, "failedIn": {"mm-1": 30}, "fails": {"mm-1": {"msg": "boom"}}}


def test_a_loaded_copy_keeps_its_loads_start_in_instance_ids():
    registry, etcd, key = registered()
    registry.put_copy(MODEL, "mm-0", CopyRecord("LOADING", 10))
    registry.put_copy(MODEL, "mm-0", CopyRecord("LOADED", 20))
    stored = json.loads(etcd.kv[key])
    assert (stored["instanceIds"], stored["loaded"]) == ({"mm-0": 10}, {"mm-0": 20})
    assert registry.read_copies(MODEL) == {"mm-0": CopyRecord("LOADED", 20)} == registry.copies(MODEL)


def test_removing_a_copy_that_is_not_there_writes_nothing():
    registry, etcd, key = registered()
    before = (etcd.revision, etcd.kv[key])
    registry.delete_copy(MODEL, "mm-9")
    assert (etcd.revision, etcd.kv[key]) == before


def test_a_copy_of_a_model_that_is_gone_is_dropped():
    registry, etcd = memory_registry()
    registry.put_copy(MODEL, "mm-0", CopyRecord("LOADING", 10))
    assert etcd.kv == {} and registry.copies(MODEL) == {}


def test_a_swap_against_a_stale_view_retries_on_etcds_record():
    registry, etcd, _ = registered()
    other = Registry("http://127.0.0.1:1", PREFIX)
    other.client = etcd  # type: ignore[assignment]
    other.put_copy(MODEL, "mm-1", CopyRecord("LOADED", 5))  # not in `registry`'s view: no watch runs here
    registry.put_copy(MODEL, "mm-0", CopyRecord("LOADING", 10))
    assert registry.read_copies(MODEL) == {"mm-1": CopyRecord("LOADED", 5), "mm-0": CopyRecord("LOADING", 10)}


def test_a_record_modelmesh_wrote_is_read_and_its_other_fields_kept():
    registry, etcd = memory_registry()
    key = f"{PREFIX}registry/{MODEL}"
    etcd.kv[key] = json.dumps({"type": "mt:sklearn", "encKey": "{}", "mPath": "models/a", "refs": 1, "autoDel": True,
                               "lu": 7, "instanceIds": {"abcdef123456": 3}})
    assert registry.read_model(MODEL) == ModelRecord("mt:sklearn", "models/a", "{}", 7, True)
    assert registry.read_copies(MODEL) == {"abcdef123456": CopyRecord("LOADING", 3)}
    registry.put_copy(MODEL, "mm-0", CopyRecord("LOADING", 10))
    stored = json.loads(etcd.kv[key])
    assert stored["refs"] == 1 and stored["instanceIds"] == {"abcdef123456": 3, "mm-0": 10}


def test_the_instance_record_uses_modelmeshs_names_and_leaves_defaults_out():
    registry, etcd = memory_registry()
    record = InstanceRecord("127.0.0.1:1", capacity=90, used=10, models=1, lru=4, started=2, labels=("mt:sklearn",))
    registry.put_instance("mm-0", record, SimpleNamespace(id=1))  # type: ignore[arg-type]
    assert json.loads(etcd.kv[f"{PREFIX}instances/mm-0"]) == {
        "endpoint": "127.0.0.1:1", "cap": 90, "used": 10, "count": 1, "lruTime": 4, "startTime": 2,
        "labels": ["mt:sklearn"]}
    assert registry.instances() == {"mm-0": record}
