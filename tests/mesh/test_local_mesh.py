"""A three-instance local mesh behaves as ModelMesh does: routing, its errors, the management API,
placement, cache misses, failed loads, metrics, and an instance killed under it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import grpc
import pytest
import requests
from mmgitops.modelmesh.samples import PROBE_JSON

from tests.mesh.conftest import Mesh, Status, local_mesh, mesh_pb, rpc_error, v2_pb, wait_for

pytestmark = pytest.mark.mesh


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with local_mesh(tmp_path_factory.mktemp("mesh"), "test-routing", "--instances", "3", "--samples", "6",
                    "--no-register") as running:
        running.model_a = running.register("isvc-a", "sample-00")
        running.model_b = running.register("isvc-b", "sample-01")
        yield running


def test_model_name_routes_to_the_vmodels_own_model(mesh):
    assert mesh.infer("isvc-a") == (mesh.samples["sample-00"]["expected"], mesh.model_a)
    assert mesh.infer("isvc-b") == (mesh.samples["sample-01"]["expected"], mesh.model_b)
    assert mesh.model_a.startswith("isvc-a__isvc-") and len(mesh.model_a.rpartition("-")[2]) == 10


def test_the_mm_vmodel_id_header_routes_when_model_name_is_empty(mesh):
    assert mesh.infer("", metadata=(("mm-vmodel-id", "isvc-b"),)) == (1, mesh.model_b)
    assert mesh.infer("", metadata=(("mm-vmodel-id-bin", b"isvc-a"),)) == (0, mesh.model_a)


def test_the_mm_model_id_header_routes_to_the_concrete_model(mesh):
    assert mesh.infer("", metadata=(("mm-model-id", mesh.model_b),)) == (1, mesh.model_b)
    assert mesh.infer("", metadata=(("mm-model-id-bin", mesh.model_a.encode()),)) == (0, mesh.model_a)


def test_a_bare_concrete_id_in_model_name_is_not_found(mesh):
    # model_name is a vmodel id (the dataplane config's vModelId: true); only the header names a concrete id.
    assert rpc_error(lambda: mesh.infer(mesh.model_a)).code() == grpc.StatusCode.NOT_FOUND


def test_model_name_wins_over_the_headers(mesh):
    # ModelMeshApi looks at the headers only when field 1 is empty.
    assert mesh.infer("isvc-a", metadata=(("mm-model-id", mesh.model_b),)) == (0, mesh.model_a)


def test_both_headers_are_invalid_argument(mesh):
    error = rpc_error(lambda: mesh.infer("", metadata=(("mm-vmodel-id", "isvc-a"), ("mm-model-id", mesh.model_a))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_no_model_id_at_all_is_invalid_argument(mesh):
    assert rpc_error(lambda: mesh.infer("")).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_unknown_vmodel_is_not_found(mesh):
    assert rpc_error(lambda: mesh.infer("no-such-isvc")).code() == grpc.StatusCode.NOT_FOUND
    error = rpc_error(lambda: mesh.infer("", metadata=(("mm-vmodel-id", "no-such-isvc"),)))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_every_model_answers_through_every_instance_from_its_one_copy(mesh):
    for instance in range(len(mesh.ids())):
        assert mesh.infer("isvc-a", instance) == (0, mesh.model_a)
        assert mesh.infer("isvc-b", instance) == (1, mesh.model_b)
    for model_id in (mesh.model_a, mesh.model_b):
        copies = mesh.status(model_id).modelCopyInfos
        assert len(copies) == 1 and copies[0].location in mesh.ids()


def test_health_calls_need_a_model_id_and_are_not_served_by_the_runtime(mesh):
    stub = mesh.v2(1)
    calls = {"ServerLive": v2_pb.ServerLiveRequest(), "ServerReady": v2_pb.ServerReadyRequest(),
             "ModelReady": v2_pb.ModelReadyRequest(name="isvc-a"), "ServerMetadata": v2_pb.ServerMetadataRequest()}
    for method, request in calls.items():
        error = rpc_error(lambda m=method, r=request: getattr(stub, m)(r, timeout=5))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert error.details() == "must include mm-model-id header"
        # With a model id the call is routed to the model, and the MLServer adapter does not let it through.
        error = rpc_error(lambda m=method, r=request: getattr(stub, m)(r, metadata=(("mm-vmodel-id", "isvc-a"),),
                                                                     timeout=30))
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED, method
    error = rpc_error(lambda: stub.ServerReady(v2_pb.ServerReadyRequest(), metadata=(("mm-vmodel-id", "no-such"),),
                                               timeout=5))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    # Readiness is the probe port's /ready, as the Deployment's readiness probe asks it.
    assert requests.get(f"{mesh.state['instances'][1]['probes']}/ready", timeout=5).status_code == 200


def test_the_rest_proxy_serves_infer_and_metadata_by_isvc_name(mesh):
    rest = mesh.state["instances"][2]["rest"]
    response = requests.post(f"{rest}/v2/models/isvc-b/infer", data=PROBE_JSON,
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == mesh.model_b and body["outputs"][0]["data"] == [1]
    metadata = requests.get(f"{rest}/v2/models/isvc-a", timeout=30)
    assert metadata.status_code == 200 and metadata.json()["name"] == mesh.model_a
    assert requests.post(f"{rest}/v2/models/no-such-isvc/infer", data=PROBE_JSON, timeout=30).status_code == 404


def test_the_management_api_reports_status_and_copy_locations(mesh):
    sample = mesh.samples["sample-02"]
    info = mesh_pb.ModelInfo(type="mt:sklearn", path=sample["path"],
                             key=f'{{"storage_key": "local-s3", "bucket": "modelmesh-example-models", '
                                 f'"disk_size_bytes": {sample["size"]}}}')
    mm = mesh.mm(1)
    registered = mm.registerModel(mesh_pb.RegisterModelRequest(modelId="plain-c", modelInfo=info), timeout=30)
    assert registered.status == Status.NOT_LOADED and not registered.modelCopyInfos
    loaded = mm.ensureLoaded(mesh_pb.EnsureLoadedRequest(modelId="plain-c", sync=True), timeout=60)
    assert loaded.status == Status.LOADED
    # ModelMesh cannot tell loaded from loading copies in its records: they are UNKNOWN.
    assert [c.copyStatus for c in loaded.modelCopyInfos] == [Status.UNKNOWN]
    assert loaded.modelCopyInfos[0].location in mesh.ids() and loaded.modelCopyInfos[0].time > 0
    vstatus = mesh.mm(2).getVModelStatus(mesh_pb.GetVModelStatusRequest(vModelId="isvc-a"), timeout=10)
    assert (vstatus.status, vstatus.activeModelId, vstatus.targetModelId) == (
        mesh_pb.VModelStatusInfo.DEFINED, mesh.model_a, mesh.model_a)
    assert vstatus.activeModelStatus.status == Status.LOADED
    missing = mm.getVModelStatus(mesh_pb.GetVModelStatusRequest(vModelId="no-such-isvc"), timeout=10)
    assert missing.status == mesh_pb.VModelStatusInfo.NOT_FOUND and missing.activeModelId == ""
    mm.unregisterModel(mesh_pb.UnregisterModelRequest(modelId="plain-c"), timeout=10)
    assert mesh.status("plain-c", 2).status == Status.NOT_FOUND


def test_a_vmodel_moves_to_a_new_target_once_it_is_loaded(mesh):
    first = mesh.register("isvc-swap", "sample-03")
    assert mesh.infer("isvc-swap")[0] == mesh.samples["sample-03"]["expected"]
    second = mesh.register("isvc-swap", "sample-04")
    assert mesh.infer("isvc-swap") == (mesh.samples["sample-04"]["expected"], second)
    status = mesh.mm().getVModelStatus(mesh_pb.GetVModelStatusRequest(vModelId="isvc-swap"), timeout=10)
    assert status.activeModelId == second and status.status == mesh_pb.VModelStatusInfo.DEFINED
    # The replaced target was created for the vmodel (autoDeleteTargetModel), so it is gone.
    assert wait_for("the replaced model to be deleted", lambda: mesh.status(first).status == Status.NOT_FOUND)


def test_new_copies_are_spread_at_random_over_roomy_instances(mesh):
    # Every instance is far from full and holds few models: all are in range of the best, and one is picked
    # at random (CacheMissForwardingLB.getNext); six copies on one instance would be a 0.4 % event.
    locations = [mesh.status(mesh.register(f"isvc-place-{n}", "sample-05")).modelCopyInfos[0].location
                 for n in range(6)]
    assert set(locations) <= set(mesh.ids()) and len(set(locations)) >= 2, locations


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_a_type_without_a_runtime_fails_its_load_at_once(mesh, sync):
    """Even when the caller does not wait for the load (sync false, as modelmesh-serving registers), the type check
    runs in the call (ModelMesh.ensureLoadedInternal, verifyLocalTypeConstraintsBeforeLoad): the reply says it."""
    mesh.register(f"isvc-bare-type-{sync}", "sample-05", model_type="sklearn", sync=sync)
    reply = mesh.last_reply.activeModelStatus
    assert reply.status == Status.LOADING_FAILED and not reply.modelCopyInfos
    assert list(reply.errors) == ["There are no running instances that meet the label requirements of type "
                                  "sklearn: [_no_runtime]"]
    error = rpc_error(lambda: mesh.infer(f"isvc-bare-type-{sync}"))
    assert error.code() == grpc.StatusCode.INTERNAL and "_no_runtime" in error.details()


def test_a_cache_miss_blocks_until_the_load_finishes_then_succeeds(mesh):
    misses = mesh.total("modelmesh_cache_miss_milliseconds_count")
    model_id = mesh.register("isvc-cold", "sample-02", load=False)
    assert mesh.status(model_id).status == Status.NOT_LOADED
    assert mesh.infer("isvc-cold", 1) == (mesh.samples["sample-02"]["expected"], model_id)
    assert mesh.status(model_id).status == Status.LOADED
    assert mesh.total("modelmesh_cache_miss_milliseconds_count") == misses + 1


def test_a_bad_model_path_gives_loading_failed_with_the_error_and_internal(mesh):
    # ModelMesh exposes the counter without a suffix; the Prometheus parser names its sample ..._total.
    failures = mesh.total("modelmesh_loadmodel_failure_total")
    model_id = mesh.register("isvc-broken", "sample-00", path="models/no-such-model/model.joblib")
    status = mesh.status(model_id)
    assert status.status == Status.LOADING_FAILED
    assert any("models/no-such-model/model.joblib" in e for e in status.errors), status.errors
    assert [c.copyStatus for c in status.modelCopyInfos] == [Status.LOADING_FAILED]
    error = rpc_error(lambda: mesh.infer("isvc-broken", 2))
    assert error.code() == grpc.StatusCode.INTERNAL and "no-such-model" in error.details()
    assert mesh.total("modelmesh_loadmodel_failure_total") >= failures + 1


def test_metrics_carry_modelmesh_names_and_the_leader_alone_reports_totals(mesh):
    families = mesh.metrics(0)
    for name in ("modelmesh_instance_capacity_bytes", "modelmesh_instance_used_bytes",
                 "modelmesh_instance_models_total", "modelmesh_api_request_milliseconds",
                 "modelmesh_loadmodel_milliseconds"):
        assert name in families, sorted(families)
    # 64 MiB = 8192 units, less the unload buffer (2 loading threads x 123 default-size units / 2)
    assert mesh.sample_value(0, "modelmesh_instance_capacity_bytes") == (8192 - 123) * 8192
    assert mesh.sample_value(0, "modelmesh_api_request_milliseconds_count", method="ModelInfer", code="OK") > 0
    # Payload sizes of external requests (ModelMeshApi): the request's always, the response's on success.
    for code in ("OK", "NOT_FOUND"):
        labels = {"method": "ModelInfer", "code": code}
        requests_seen = mesh.sample_value(0, "modelmesh_api_request_milliseconds_count", **labels)
        assert requests_seen > 0 and mesh.sample_value(0, "modelmesh_request_size_bytes_count", **labels) == \
            requests_seen
        assert mesh.sample_value(0, "modelmesh_response_size_bytes_count", **labels) == (
            requests_seen if code == "OK" else 0)
    # Calls closed before they are invoked (no model id) are not counted at all.
    assert mesh.sample_value(0, "modelmesh_api_request_milliseconds_count", code="INVALID_ARGUMENT") == 0
    # The leader refreshes its totals once a second: wait until they count this module's models.
    wait_for("the leader to count the registered models",
             lambda: mesh.sample_value(0, "modelmesh_models_managed_total") >= 4)
    assert "modelmesh_models_managed_total" not in mesh.metrics(1)


def test_a_killed_instance_loses_no_model_and_the_others_serve_its_models(mesh):
    holder = mesh.status(mesh.model_a).modelCopyInfos[0].location
    index = mesh.ids().index(holder)
    os.killpg(mesh.state["instances"][index]["pid"], signal.SIGKILL)
    survivor = (index + 1) % 3
    # The registry outlives the instance: every vmodel is still there.
    for vmodel in ("isvc-a", "isvc-b", "isvc-cold"):
        status = mesh.mm(survivor).getVModelStatus(mesh_pb.GetVModelStatusRequest(vModelId=vmodel), timeout=10)
        assert status.status == mesh_pb.VModelStatusInfo.DEFINED
    # Once its lease expires the dead instance is skipped: a request loads the model on a survivor at once.
    def served() -> bool:
        try:
            return mesh.infer("isvc-a", survivor) == (0, mesh.model_a)
        except grpc.RpcError:
            return False  # still routed to the dead instance until its lease expires (3 s)

    wait_for("the dead instance to leave the instance table", served, timeout=30)
    for instance in range(3):
        if instance != index:
            assert mesh.infer("isvc-a", instance) == (0, mesh.model_a)
            assert mesh.infer("isvc-b", instance) == (1, mesh.model_b)
    # The dead copy stays in the model record until the leader's reaper prunes it (after 10 min).
    locations = [c.location for c in mesh.status(mesh.model_a, survivor).modelCopyInfos]
    assert holder in locations and len(locations) == 2, locations
