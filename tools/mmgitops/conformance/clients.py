"""Thin clients for one ModelMesh pod's endpoints: KServe v2 over gRPC and REST, `mmesh.ModelMesh`, metrics.

They turn transport errors into `TargetError` with the gRPC status name, so checks compare codes, not
exception types of a particular client library.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc
import requests
import urllib3

from mmgitops.conformance.target import InferResult, TargetError
from mmgitops.modelmesh import ids, metrics, samples, stubs

mesh_pb, mesh_grpc = stubs.mesh()

TIMEOUT_S = 60.0  # covers a cold load: a request to a Standby model blocks until it is loaded
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def _error(error: grpc.RpcError) -> TargetError:
    return TargetError(error.code().name, error.details() or "")


class Inference:
    """KServe v2 `ModelInfer` on a pod's gRPC port, with the probe every sample answers."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = stubs.v2()[1].GRPCInferenceServiceStub(channel)

    def infer(self, name: str, headers: Sequence[tuple[str, str]] = ()) -> InferResult:
        started = time.perf_counter()
        try:
            response = self.stub.ModelInfer(samples.probe_request(name), metadata=tuple(headers), timeout=TIMEOUT_S)
        except grpc.RpcError as error:
            raise _error(error) from error
        return InferResult(samples.answer(response), response.model_name, (time.perf_counter() - started) * 1000)



def probe_ready(base_url: str, timeout_s: float = 2.0) -> bool:
    """ModelMesh's readiness probe, `GET /ready` on the pod's probe port (8089), which the runtime Deployment
    uses as its readinessProbe (modelmesh-serving config/internal/base/deployment.yaml.tmpl). KServe's
    ServerReady is no health check on ModelMesh's port: without a model header it is INVALID_ARGUMENT
    (ModelMeshApi.getModelIdsFromHeaders), and the dataplane config forwards only ModelInfer and ModelMetadata."""
    try:
        return requests.get(f"{base_url.rstrip('/')}/ready", timeout=timeout_s).status_code == 200
    except requests.RequestException:
        return False


class Rest:
    """KServe v2 REST on a pod's REST proxy port."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def infer(self, name: str) -> InferResult:
        started = time.perf_counter()
        response = requests.post(f"{self.base_url}/v2/models/{name}/infer", data=samples.PROBE_JSON,
                                 headers={"Content-Type": "application/json"}, timeout=TIMEOUT_S)
        ms = (time.perf_counter() - started) * 1000
        body = response.json()
        if response.status_code != 200:
            # grpc-gateway's error body carries the gRPC code as a number.
            raise TargetError(CODE_NAMES.get(body.get("code"), f"HTTP {response.status_code}"),
                              str(body.get("message", body)))
        return InferResult(int(body["outputs"][0]["data"][0]), body["model_name"], ms)


class Management:
    """`mmesh.ModelMesh` on a pod's gRPC port."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = mesh_grpc.ModelMeshStub(channel)

    def set_vmodel(self, vmodel_id: str, model_id: str, model_type: str, path: str, key: str, load: bool,
                   sync: bool = True) -> Any:
        # Synchronous by default, unlike the controller's call: a check reads the model's state right after.
        request = ids.set_vmodel_request(mesh_pb, vmodel_id, model_id, model_type, path, key, load, sync=sync)
        try:
            return self.stub.setVModel(request, timeout=TIMEOUT_S * 2)
        except grpc.RpcError as error:
            raise _error(error) from error

    def delete_vmodel(self, vmodel_id: str) -> None:
        try:
            self.stub.deleteVModel(mesh_pb.DeleteVModelRequest(vModelId=vmodel_id), timeout=30)
        except grpc.RpcError as error:
            raise _error(error) from error

    def vmodel_status(self, vmodel_id: str) -> Any:
        try:
            return self.stub.getVModelStatus(mesh_pb.GetVModelStatusRequest(vModelId=vmodel_id), timeout=10)
        except grpc.RpcError as error:
            raise _error(error) from error


    def model_status(self, model_id: str) -> Any:
        try:
            return self.stub.getModelStatus(mesh_pb.GetStatusRequest(modelId=model_id), timeout=10)
        except grpc.RpcError as error:
            raise _error(error) from error


def status_name(status: int) -> str:
    return mesh_pb.ModelStatusInfo.ModelStatus.Name(status)


def scrape(url: str, verify: bool = True) -> dict[str, Any]:
    """Metric families by name; counters are named without `_total`, as prometheus_client parses them."""
    if not verify:  # the point (the pod's own certificate), not news on every scrape; once, for every thread
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    response = requests.get(url, timeout=10, verify=verify)
    response.raise_for_status()
    return metrics.parse(response.text)


class MetricsScraper:
    """Scrapes a pod's `/metrics` by HOST:PORT. ModelMesh serves them over https by default, with the pod's own
    certificate (MM_METRICS `scheme`, model-serving-config `metrics.scheme`), or http: the scheme that answers
    first is kept for the pod."""

    def __init__(self) -> None:
        self._scheme: dict[str, str] = {}

    def scrape(self, pod: str, address: str) -> dict[str, Any]:
        schemes = [self._scheme[pod]] if pod in self._scheme else ["https", "http"]
        failures = []
        for scheme in schemes:
            try:
                found = scrape(f"{scheme}://{address}/metrics", verify=False)
            except requests.RequestException as error:
                failures.append(f"{scheme}: {error}")
                continue
            self._scheme[pod] = scheme
            return found
        raise TargetError("UNAVAILABLE", f"pod {pod} metrics at {address}: {'; '.join(failures)}")
