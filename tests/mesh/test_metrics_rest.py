"""The mesh's ModelMesh metrics and probes over HTTP, and the REST proxy in front of a real MLServer."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import joblib
import numpy as np
import pytest
import requests
from mmgitops.lab.mesh import adapter, metrics, modelserver, rest
from mmgitops.lab.ports import free_port
from mmgitops.modelmesh import metrics as prometheus
from mmgitops.modelmesh import stubs
from sklearn.linear_model import LogisticRegression

pytestmark = pytest.mark.mesh
dataplane_pb2, dataplane_pb2_grpc = stubs.v2()

MS_LE = ["0.5", "1.0", "2.0", "5.0", "10.0", "20.0", "50.0", "75.0", "100.0", "200.0", "500.0", "1000.0", "2000.0",
         "5000.0", "10000.0", "20000.0", "60000.0", "120000.0", "300000.0", "+Inf"]
AGE_LE = ["30000.0", "300000.0", "900000.0", "3600000.0", "1.44E7", "4.32E7", "8.64E7", "6.048E8", "2.592E9",
          "7.776E9", "+Inf"]
MODEL_SIZE_LE = ["262144.0", "1048576.0", "4194304.0", "1.6777216E7", "6.7108864E7", "2.68435456E8",
                 "1.073741824E9", "4.294967296E9", "+Inf"]
MESSAGE_SIZE_LE = ["128.0", "512.0", "2048.0", "8192.0", "32768.0", "131072.0", "524288.0", "2097152.0", "+Inf"]
ALWAYS = {
    "modelmesh_invoke_model_milliseconds": "histogram",
    "modelmesh_api_request_milliseconds": "histogram",
    "modelmesh_request_size_bytes": "histogram",
    "modelmesh_response_size_bytes": "histogram",
    "modelmesh_cache_miss_milliseconds": "histogram",
    "modelmesh_loadmodel_milliseconds": "histogram",
    "modelmesh_unloadmodel_milliseconds": "histogram",
    "modelmesh_req_queue_delay_milliseconds": "histogram",
    "modelmesh_loading_queue_delay_milliseconds": "histogram",
    "modelmesh_model_sizing_milliseconds": "histogram",
    "modelmesh_loadmodel_failure": "counter",
    "modelmesh_unloadmodel_failure": "counter",
    "modelmesh_unloadmodel_attempt_failure": "counter",
    "modelmesh_age_at_eviction_milliseconds": "histogram",
    "modelmesh_loaded_model_size_bytes": "histogram",
    "modelmesh_instance_lru_seconds": "gauge",
    "modelmesh_instance_lru_age_seconds": "gauge",
    "modelmesh_instance_capacity_bytes": "gauge",
    "modelmesh_instance_used_bytes": "gauge",
    "modelmesh_instance_used_bps": "gauge",
    "modelmesh_instance_models_total": "gauge",
}
LEADER = {"modelmesh_models_loaded_total", "modelmesh_models_managed_total", "modelmesh_models_with_failure_total"}
INFER = "/inference.GRPCInferenceService/ModelInfer"


# ---- metrics and probes


class Probes:
    def __init__(self) -> None:
        self.ready, self.live = False, True


@pytest.fixture
def mesh() -> Iterator[tuple[metrics.MeshMetrics, metrics.Endpoints, Probes]]:
    probes = Probes()
    recorded = metrics.MeshMetrics()
    endpoints = metrics.serve(recorded, free_port(), free_port(), lambda: probes.ready, lambda: probes.live)
    try:
        yield recorded, endpoints, probes
    finally:
        endpoints.stop()


def scrape(endpoints: metrics.Endpoints, path: str = "/metrics") -> str:
    response = requests.get(f"http://127.0.0.1:{endpoints.metrics_port}{path}", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def families(text: str) -> prometheus.Families:
    return prometheus.parse(text)


def sample(family, name: str, **labels: str) -> float:
    values = [s.value for s in family.samples if s.name == name and s.labels == labels]
    assert len(values) == 1, (name, labels, family.samples)
    return values[0]


def test_every_modelmesh_metric_is_exposed_with_its_type_and_no_leader_gauges(mesh):
    _, endpoints, _ = mesh
    text = scrape(endpoints)
    found = {name: f.type for name, f in families(text).items()}
    assert found == ALWAYS
    assert "_created" not in text
    assert not LEADER & set(re.findall(r"^(\w+)", text, re.M))
    # Unlabelled histograms exist from the start, as upstream's do; labelled ones only once observed.
    assert "modelmesh_loadmodel_milliseconds_count 0.0\n" in text
    assert "modelmesh_api_request_milliseconds_count" not in text


def test_counters_are_exposed_under_modelmesh_exact_names(mesh):
    recorded, endpoints, _ = mesh
    recorded.load_failed()
    recorded.load_failed()
    recorded.unload_failed()
    text = scrape(endpoints)
    assert "# TYPE modelmesh_loadmodel_failure counter\nmodelmesh_loadmodel_failure 2.0\n" in text
    assert "# TYPE modelmesh_unloadmodel_failure counter\nmodelmesh_unloadmodel_failure 1.0\n" in text
    assert "modelmesh_unloadmodel_attempt_failure 0.0\n" in text
    assert "_failure_total" not in text


def test_two_evictions_count_two_in_the_age_histogram(mesh):
    recorded, endpoints, _ = mesh
    recorded.evicted(45_000)
    recorded.evicted(2 * 3600 * 1000)
    family = families(scrape(endpoints))["modelmesh_age_at_eviction_milliseconds"]
    assert sample(family, "modelmesh_age_at_eviction_milliseconds_count") == 2
    assert sample(family, "modelmesh_age_at_eviction_milliseconds_sum") == 45_000 + 7_200_000
    buckets = [(s.labels["le"], s.value) for s in family.samples if s.name.endswith("_bucket")]
    assert [le for le, _ in buckets] == AGE_LE
    assert dict(buckets)["30000.0"] == 0 and dict(buckets)["300000.0"] == 1 and dict(buckets)["1.44E7"] == 2


def test_api_requests_carry_method_and_code_and_modelmesh_buckets(mesh):
    recorded, endpoints, _ = mesh
    recorded.api_request(INFER, grpc.StatusCode.OK, 3.9, req_bytes=200, resp_bytes=100)
    recorded.api_request(INFER, "NOT_FOUND", 0.2)
    recorded.invoke_model(INFER, grpc.StatusCode.OK, 1.0)
    text = scrape(endpoints)
    found = families(text)
    api = found["modelmesh_api_request_milliseconds"]
    assert {frozenset(s.labels) for s in api.samples} == {frozenset({"method", "code", "le"}),
                                                          frozenset({"method", "code"})}
    ok = {"method": "ModelInfer", "code": "OK"}
    assert [s.labels["le"] for s in api.samples if s.name.endswith("_bucket") and s.labels["code"] == "OK"] == MS_LE
    assert sample(api, "modelmesh_api_request_milliseconds_count", **ok) == 1
    assert sample(api, "modelmesh_api_request_milliseconds_sum", **ok) == 3  # whole milliseconds, like ModelMesh
    assert sample(api, "modelmesh_api_request_milliseconds_bucket", le="0.5", method="ModelInfer",
                  code="NOT_FOUND") == 1
    assert sample(found["modelmesh_invoke_model_milliseconds"], "modelmesh_invoke_model_milliseconds_count", **ok) == 1
    # The same raw lines upstream's own metrics test matches (trailing comma, Java number format).
    assert 'modelmesh_request_size_bytes_bucket{method="ModelInfer",code="OK",le="128.0",} 0.0\n' in text
    assert 'modelmesh_request_size_bytes_bucket{method="ModelInfer",code="OK",le="512.0",} 1.0\n' in text
    assert 'modelmesh_response_size_bytes_bucket{method="ModelInfer",code="OK",le="128.0",} 1.0\n' in text
    sizes = found["modelmesh_request_size_bytes"]
    assert [s.labels["le"] for s in sizes.samples if s.name.endswith("_bucket")] == MESSAGE_SIZE_LE


def test_loads_record_time_and_size_with_model_size_buckets(mesh):
    recorded, endpoints, _ = mesh
    recorded.load(250, 100 * 2**20)
    recorded.unload(12)
    recorded.cache_miss(300)
    recorded.queue_delay(1)
    text = scrape(endpoints)
    found = families(text)
    size = found["modelmesh_loaded_model_size_bytes"]
    assert [s.labels["le"] for s in size.samples if s.name.endswith("_bucket")] == MODEL_SIZE_LE
    assert 'modelmesh_loaded_model_size_bytes_bucket{le="6.7108864E7",} 0.0\n' in text
    assert 'modelmesh_loaded_model_size_bytes_bucket{le="2.68435456E8",} 1.0\n' in text
    for name in ("loadmodel", "unloadmodel", "cache_miss", "req_queue_delay"):
        family = found[f"modelmesh_{name}_milliseconds"]
        assert sample(family, f"modelmesh_{name}_milliseconds_count") == 1
    assert sample(found["modelmesh_loadmodel_milliseconds"], "modelmesh_loadmodel_milliseconds_bucket",
                  le="200.0") == 0
    assert sample(found["modelmesh_loadmodel_milliseconds"], "modelmesh_loadmodel_milliseconds_bucket",
                  le="500.0") == 1


def test_instance_gauges_follow_modelmesh_rules(mesh):
    recorded, endpoints, _ = mesh
    now_ms = 1_700_000_000_500
    recorded.set_instance(now_ms - 90_400, 8192 * 1000, 8192 * 250, 3, now_ms=now_ms)
    found = families(scrape(endpoints))
    values = {name: found[name].samples[0].value for name in ALWAYS if name.startswith("modelmesh_instance_")}
    assert values == {
        "modelmesh_instance_lru_seconds": (now_ms - 90_400) // 1000,
        "modelmesh_instance_lru_age_seconds": 90,
        "modelmesh_instance_capacity_bytes": 8192 * 1000,
        "modelmesh_instance_used_bytes": 8192 * 250,
        "modelmesh_instance_used_bps": 2500,
        "modelmesh_instance_models_total": 3,
    }
    recorded.set_instance(0, 8192 * 1000, 0, 0, now_ms=now_ms)
    text = scrape(endpoints)
    # No model: ModelMesh reports Long.MAX_VALUE ms as the LRU time, and an age of 0.
    assert "modelmesh_instance_lru_seconds 9.223372036854776E15\n" in text
    assert "modelmesh_instance_lru_age_seconds 0.0\n" in text
    assert "modelmesh_instance_models_total 0.0\n" in text


def test_leader_gauges_appear_only_while_leader(mesh):
    recorded, endpoints, _ = mesh
    recorded.set_leader(loaded=3, managed=5, with_failure=1)
    found = families(scrape(endpoints))
    assert {name: found[name].samples[0].value for name in LEADER} == {
        "modelmesh_models_loaded_total": 3, "modelmesh_models_managed_total": 5,
        "modelmesh_models_with_failure_total": 1}
    assert all(found[name].type == "gauge" for name in LEADER)
    recorded.clear_leader()
    assert not LEADER & set(families(scrape(endpoints)))


def test_per_model_metrics_add_model_labels():
    recorded = metrics.MeshMetrics(per_model=True)
    recorded.api_request(INFER, "OK", 5, model_id="m-1__isvc-abc", vmodel_id="isvc")
    recorded.api_request(INFER, "OK", 5, model_id="m-2__isvc-def")
    recorded.load(10, 1000, model_id="m-1__isvc-abc", vmodel_id="isvc")
    text = recorded.exposition().decode()
    found = families(text)
    api = found["modelmesh_api_request_milliseconds"]
    counts = {(s.labels["modelId"], s.labels["vModelId"]): s.value for s in api.samples if s.name.endswith("_count")}
    # Upstream puts the vmodel id (else the model id) in both labels of request metrics.
    assert counts == {("isvc", "isvc"): 1, ("m-2__isvc-def", "m-2__isvc-def"): 1}
    load = found["modelmesh_loadmodel_milliseconds"]
    assert sample(load, "modelmesh_loadmodel_milliseconds_count", modelId="m-1__isvc-abc", vModelId="isvc") == 1
    # With model labels, histograms start empty.
    assert "modelmesh_unloadmodel_milliseconds_count" not in text
    plain = families(metrics.MeshMetrics().exposition().decode())
    assert all(set(s.labels) <= {"le"} for s in plain["modelmesh_loadmodel_milliseconds"].samples)


def test_metrics_endpoint_paths_and_name_filter(mesh):
    recorded, endpoints, _ = mesh
    recorded.load_failed()
    assert "modelmesh_loadmodel_failure 1.0" in scrape(endpoints, "/")
    assert "modelmesh_loadmodel_failure 1.0" in scrape(endpoints, "/metrics/")
    only = families(scrape(endpoints, "/metrics?name[]=modelmesh_loadmodel_failure"))
    assert set(only) == {"modelmesh_loadmodel_failure"}
    assert requests.get(f"http://127.0.0.1:{endpoints.metrics_port}/other", timeout=5).status_code == 404


def test_probes_answer_as_the_callables_say(mesh):
    _, endpoints, probes = mesh
    base = f"http://127.0.0.1:{endpoints.probe_port}"
    assert requests.get(f"{base}/ready", timeout=5).status_code == 503
    assert requests.get(f"{base}/live", timeout=5).status_code == 200
    probes.ready, probes.live = True, False
    assert requests.get(f"{base}/ready", timeout=5).status_code == 200
    assert requests.get(f"{base}/live", timeout=5).status_code == 503
    assert requests.get(f"{base}/metrics", timeout=5).status_code == 404


def test_a_failing_probe_check_is_503_and_stop_closes_both_ports():
    def broken() -> bool:
        raise RuntimeError("no registry")

    endpoints = metrics.serve(metrics.MeshMetrics(), 0, 0, broken, lambda: True)
    ports = (endpoints.metrics_port, endpoints.probe_port)
    try:
        assert requests.get(f"http://127.0.0.1:{ports[1]}/ready", timeout=5).status_code == 503
        assert requests.get(f"http://127.0.0.1:{ports[1]}/live", timeout=5).status_code == 200
    finally:
        endpoints.stop()
    for port in ports:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)


# ---- REST proxy in front of a real MLServer


def train(path: Path, flip: bool) -> Path:
    """A tiny classifier whose answer for [1, 1, 1, 1] is 1, or 0 when flipped."""
    x = np.array([[0, 0, 0, 0], [1, 1, 1, 1]] * 10, dtype=np.float32)
    y = np.array([1, 0] * 10 if flip else [0, 1] * 10)
    joblib.dump(LogisticRegression().fit(x, y), path)
    return path


def infer_body(data: list) -> dict:
    return {"inputs": [{"name": "predict", "datatype": "FP32", "shape": [1, 4], "data": data}]}


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, modelserver.ModelServer]]:
    work = tmp_path_factory.mktemp("rest")
    server = modelserver.start(work / "models", work / "mlserver.log")
    spi_port = free_port()
    spi = adapter.serve(adapter.Adapter(server, adapter.RuntimeConfig(capacity_bytes=64 * 2**20)), spi_port)
    proxy = None
    try:
        with grpc.insecure_channel(f"127.0.0.1:{spi_port}") as channel:
            stub = adapter.pb_grpc.ModelRuntimeStub(channel)
            for name, flip in (("rest-a", False), ("rest-b", True)):
                stub.loadModel(adapter.pb.LoadModelRequest(
                    modelId=name, modelType="sklearn", modelPath=str(train(work / f"{name}.joblib", flip))),
                    timeout=60)
        proxy = rest.start(server.grpc_target, free_port())
        yield f"http://127.0.0.1:{proxy.port}", server
    finally:
        if proxy is not None:
            proxy.stop()
        spi.stop(1)
        server.stop()


def test_infer_returns_each_models_prediction(proxied):
    base, _ = proxied
    with requests.Session() as http:
        answers = {}
        for name in ("rest-a", "rest-b"):
            response = http.post(f"{base}/v2/models/{name}/infer", json=infer_body([1, 1, 1, 1]), timeout=10)
            assert response.status_code == 200, response.text
            assert response.headers["Content-Type"] == "application/json"
            body = response.json()
            assert body["model_name"] == name
            assert body["outputs"][0]["datatype"] == "INT64" and body["outputs"][0]["shape"] == [1, 1]
            answers[name] = body["outputs"][0]["data"]
    assert answers == {"rest-a": [1], "rest-b": [0]}


def test_nested_tensor_data_is_accepted_like_the_upstream_proxy(proxied):
    base, _ = proxied
    response = requests.post(f"{base}/v2/models/rest-a/infer", json={**infer_body([[0, 0, 0, 0]]), "id": "r-1"},
                             timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [0]
    assert response.json()["id"] == "r-1"


def test_metadata_names_the_model(proxied):
    base, _ = proxied
    for name in ("rest-a", "rest-b"):
        response = requests.get(f"{base}/v2/models/{name}", timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["name"] == name
        assert set(body) <= {"name", "versions", "platform", "inputs", "outputs", "parameters"}


def test_an_unknown_model_is_404_with_a_json_error(proxied):
    base, _ = proxied
    for response in (requests.post(f"{base}/v2/models/no-such-model/infer", json=infer_body([1, 1, 1, 1]),
                                   timeout=10),
                     requests.get(f"{base}/v2/models/no-such-model", timeout=10),
                     requests.post(f"{base}/v2/models/rest-a/versions/9/infer", json=infer_body([1, 1, 1, 1]),
                                   timeout=10)):
        assert response.status_code == 404
        body = response.json()
        assert body["code"] == grpc.StatusCode.NOT_FOUND.value[0]
        assert body["error"] == body["message"] and "not found" in body["error"]


def test_unsupported_paths_and_methods(proxied):
    base, server = proxied
    for path in ("/v2/health/ready", "/v2/models", "/v2/models/rest-a/ready", "/v2/models/rest-a/", "/"):
        response = requests.get(f"{base}{path}", timeout=10)
        assert response.status_code == 404, path
        assert response.json() == {"code": 5, "message": "Not Found", "error": "Not Found"}
    # MLServer itself serves this path: the proxy does not, as ModelMesh's does not.
    assert requests.get(f"http://127.0.0.1:{server.http_port}/v2/health/ready", timeout=10).status_code == 200
    # A served path with the wrong method: grpc-gateway's Unimplemented "Method Not Allowed".
    wrong = requests.get(f"{base}/v2/models/rest-a/infer", timeout=10)
    assert wrong.status_code == 501 and wrong.json()["message"] == "Method Not Allowed"
    assert requests.delete(f"{base}/v2/models/rest-a", timeout=10).status_code == 501


def test_a_malformed_request_is_400(proxied):
    base, _ = proxied
    for body in (b"{not json", b'{"inputs": [{"name": "predict"}]}'):
        response = requests.post(f"{base}/v2/models/rest-a/infer", data=body, timeout=10,
                                 headers={"Content-Type": "application/json"})
        assert response.status_code == 400, body
        assert response.json()["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


# ---- REST proxy: headers and gRPC error mapping, against a gRPC server that records what it gets


class Recorder(dataplane_pb2_grpc.GRPCInferenceServiceServicer):
    """Answers ModelInfer with the metadata it received, or fails with the status its model name names."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.requests: list[dataplane_pb2.ModelInferRequest] = []
        self.lock = threading.Lock()

    def ModelInfer(self, request, context):
        with self.lock:
            self.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
            self.requests.append(request)
        context.send_initial_metadata((("mm-served-by", "instance-1"),))
        if request.model_name.startswith("fail-"):
            context.abort(grpc.StatusCode[request.model_name.removeprefix("fail-")], "as asked")
        return dataplane_pb2.ModelInferResponse(model_name=request.model_name)


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    dataplane_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    proxy = rest.start(f"127.0.0.1:{port}", 0)
    try:
        yield f"http://127.0.0.1:{proxy.port}", recorder
    finally:
        proxy.stop()
        server.stop(1)


def test_model_id_headers_pass_through_as_grpc_metadata(recorded):
    base, recorder = recorded
    response = requests.post(f"{base}/v2/models/isvc/infer", json=infer_body([1, 1, 1, 1]), timeout=10, headers={
        "mm-vmodel-id": "isvc", "mm-model-id": "m-1__isvc-abc", "Grpc-Metadata-x-trace": "t-1",
        "x-not-forwarded": "no"})
    assert response.status_code == 200, response.text
    seen = recorder.metadata[-1]
    assert (seen["mm-vmodel-id"], seen["mm-model-id"], seen["x-trace"]) == ("isvc", "m-1__isvc-abc", "t-1")
    assert "x-not-forwarded" not in seen
    # The server's header metadata comes back as grpc-gateway names it.
    assert response.headers["Grpc-Metadata-mm-served-by"] == "instance-1"


def test_an_empty_body_goes_on_as_an_empty_request(recorded):
    base, recorder = recorded
    response = requests.post(f"{base}/v2/models/isvc/versions/3/infer", data=b"", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"model_name": "isvc"}
    sent = recorder.requests[-1]
    assert (sent.model_name, sent.model_version, len(sent.inputs)) == ("isvc", "3", 0)


@pytest.mark.parametrize(("code", "status"), [
    ("INVALID_ARGUMENT", 400), ("NOT_FOUND", 404), ("RESOURCE_EXHAUSTED", 429), ("UNAVAILABLE", 503),
    ("DEADLINE_EXCEEDED", 504), ("INTERNAL", 500), ("UNKNOWN", 500), ("UNIMPLEMENTED", 501),
])
def test_grpc_errors_map_to_http_statuses(recorded, code, status):
    base, _ = recorded
    response = requests.post(f"{base}/v2/models/fail-{code}/infer", json=infer_body([1, 1, 1, 1]), timeout=10)
    assert response.status_code == status
    assert response.json() == {"code": grpc.StatusCode[code].value[0], "message": "as asked", "error": "as asked"}


def test_an_unreachable_mesh_is_503():
    proxy = rest.start(f"127.0.0.1:{free_port()}", 0, timeout=5)
    try:
        response = requests.post(f"http://127.0.0.1:{proxy.port}/v2/models/m/infer", json=infer_body([1, 1, 1, 1]),
                                 timeout=10)
        assert response.status_code == 503
        assert response.json()["code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    finally:
        proxy.stop()


def test_a_taken_port_fails_the_start():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="did not start"):
            rest.start("127.0.0.1:1", taken.getsockname()[1], wait=5)
