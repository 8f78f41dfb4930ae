"""The profile's sample InferenceServices made servable on the local cluster: their models built here, uploaded to
the cluster's S3 server, and their namespace's `storage-config` Secret pointed at it in place of the placeholder.

The samples are read from the profile's own manifests (`components/modelmesh/samples*/`): each one's model format,
storage key and path. The Argo CD profile has no Application for the Secret, so `stage` may run before its sync;
`mmgitops apply overlays/...` applies the placeholder Secret, so there `stage` runs after it (applying the profile
again puts the placeholder back: a loaded model stays loaded, a new load fails until `stage` runs again).
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.exceptions
import numpy as np
import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from mmgitops.errors import ToolError
from mmgitops.gitops import yamlio
from mmgitops.gitops.apply.apply import FIELD_MANAGER
from mmgitops.lab.cluster.cluster import S3_KEY
from mmgitops.lab.standins.kube import Kube
from mmgitops.modelmesh import storage

SAMPLE_DIRS = "components/modelmesh/samples*"
BUCKET = "profile-samples"  # the samples' own bucket: the suite stages its models elsewhere, under a run prefix
SECRET = "storage-config"  # model-serving-config's storageSecretName, as the profile sets it
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
SETTLED = ("Loaded", "Standby")  # a model the mesh holds or can load: nothing to fix
GONE_WITHIN_S = 60.0
# MNIST's shape: 28 x 28 pixels in, ten digits out. The samples are that shape, not trained on MNIST itself: what
# the mesh is shown is a model of the right kind and size, loading and answering.
FEATURES, CLASSES, ROWS, SEED = 784, 10, 100, 0
ONNX_INPUT, ONNX_OUTPUT = "input", "output"


@dataclass(frozen=True)
class SampleService:
    """A sample InferenceService of the profile, as its manifest gives it."""

    name: str
    namespace: str
    model_format: str  # spec.predictor.model.modelFormat.name
    storage_key: str  # spec.predictor.model.storage.key
    path: str  # spec.predictor.model.storage.path: the object key in the bucket
    bucket: str  # storage.parameters.bucket when given, else the samples' own bucket (the storage's default)
    source: str  # the manifest, relative to the checkout
    body: dict[str, Any] = field(repr=False, compare=False)


# --- the sample models -----------------------------------------------------------------------------------------


def _mnist_shaped(rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Pixels in [0, 1) and every digit equally often, from a fixed seed: the same data on every machine."""
    rng = np.random.default_rng(SEED)
    x = rng.random((rows, FEATURES), dtype=np.float32)
    y = rng.permutation(np.arange(rows, dtype=np.int64) % CLASSES)
    return x, y


def build_sklearn_mnist(dest: Path) -> Path:
    """An SVM (sklearn.svm.SVC) on MNIST-shaped random data, saved with joblib: FP32 [N, 784] in, an INT64
    digit out (MLServer's sklearn runtime answers `predict`)."""
    import joblib  # scikit-learn takes seconds to import: only when a sample is built
    from sklearn.svm import SVC

    x, y = _mnist_shaped()
    dest.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(SVC(random_state=SEED).fit(x, y), dest)
    return dest


def build_onnx_mnist(dest: Path) -> Path:
    """A linear classifier in ONNX, made with the onnx helper API: `input` FP32 [N, 784] -> MatMul + Add ->
    `output` FP32 [N, 10], weights from a seeded RNG; checked with onnx.checker."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEED)
    weights = numpy_helper.from_array((rng.standard_normal((FEATURES, CLASSES)) * 0.05).astype(np.float32), "weights")
    bias = numpy_helper.from_array((rng.standard_normal(CLASSES) * 0.05).astype(np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("MatMul", [ONNX_INPUT, "weights"], ["scores"]),
         helper.make_node("Add", ["scores", "bias"], [ONNX_OUTPUT])],
        "mnist-linear",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["N", CLASSES])],
        initializer=[weights, bias])
    # IR 8 and opset 13: what the onnxruntime of RHOAI's Triton images (and of older ones) loads.
    model = helper.make_model(graph, producer_name="mmgitops", ir_version=8,
                              opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model, full_check=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest))
    return dest


# The builders by model format (spec.predictor.model.modelFormat.name).
BUILDERS: dict[str, Callable[[Path], Path]] = {"sklearn": build_sklearn_mnist, "onnx": build_onnx_mnist}


# --- the profile's samples -------------------------------------------------------------------------------------


def _field(obj: Any, *path: str) -> Any:
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def sample_services(root: Path) -> list[SampleService]:
    """Every InferenceService in the YAML of `components/modelmesh/samples*/`, in file order."""
    found = []
    for path in sorted(p for d in sorted(root.glob(SAMPLE_DIRS)) if d.is_dir() for p in sorted(d.glob("*.y*ml"))):
        shown = str(path.relative_to(root))
        docs, findings = yamlio.load_file(path, shown)
        if findings:
            raise ToolError(findings[0].line())
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "InferenceService":
                continue
            name = str(_field(doc, "metadata", "name") or "")
            model = _field(doc, "spec", "predictor", "model") or {}
            values = {"namespace": _field(doc, "metadata", "namespace"), "format": _field(model, "modelFormat", "name"),
                      "key": _field(model, "storage", "key"), "path": _field(model, "storage", "path")}
            missing = [k for k, v in values.items() if not isinstance(v, str) or not v]
            if missing:
                raise ToolError(f"{shown}: InferenceService {name or '?'}: no {', '.join(missing)} to stage its "
                                "model by (metadata.namespace, spec.predictor.model.modelFormat.name, .storage.key, "
                                ".storage.path)")
            if values["format"] not in BUILDERS:
                raise ToolError(f"{shown}: InferenceService {name}: no sample model for format {values['format']!r} "
                                f"(known: {', '.join(sorted(BUILDERS))})")
            bucket = _field(model, "storage", "parameters", "bucket")
            found.append(SampleService(name, values["namespace"], values["format"], values["key"],
                                       values["path"].lstrip("/"), bucket if isinstance(bucket, str) and bucket
                                       else BUCKET, shown, doc))
    return found


# --- staging ---------------------------------------------------------------------------------------------------


def _local_s3(info: dict[str, Any]) -> storage.StorageEntry:
    where = info.get("storage_config")
    if not where:
        raise ToolError("the local cluster's state names no S3 server (no storage_config): it was started by an older "
                        "mmgitops; `mmgitops local cluster down`, then up again")
    entries = storage.load_config(Path(where))
    if S3_KEY not in entries:
        raise ToolError(f"{where}: no storage {S3_KEY!r} (the local cluster's S3 server)")
    return entries[S3_KEY]


def _upload(entry: storage.StorageEntry, services: list[SampleService], progress: Callable[[str], None]) -> None:
    s3 = storage.s3_client(entry)
    with tempfile.TemporaryDirectory(prefix="mmgitops-profile-samples-") as work:
        for service in services:
            progress(f"building {service.name}'s model ({service.model_format}) and uploading it to "
                     f"s3://{service.bucket}/{service.path}")
            built = BUILDERS[service.model_format](Path(work) / service.name / Path(service.path).name)
            try:
                try:
                    s3.head_bucket(Bucket=service.bucket)
                except botocore.exceptions.ClientError:
                    where = {} if entry.region == "us-east-1" else {"CreateBucketConfiguration": {
                        "LocationConstraint": entry.region}}
                    s3.create_bucket(Bucket=service.bucket, **where)
                s3.upload_file(str(built), service.bucket, service.path)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
                raise ToolError(f"cannot upload {service.name}'s model to s3://{service.bucket}/{service.path} at "
                                f"{entry.endpoint_url}: {str(error).splitlines()[0]}") from None


def secret_data(entry: storage.StorageEntry, keys: Iterable[str]) -> dict[str, str]:
    """The storage-config Secret's stringData: each storage key the samples name, as the local S3 server with the
    samples' bucket as its default."""
    return {key: json.dumps(storage.StorageEntry(
        key=key, type=entry.type, access_key_id=entry.access_key_id, secret_access_key=entry.secret_access_key,
        endpoint_url=entry.endpoint_url, bucket=BUCKET, region=entry.region).to_json(), sort_keys=True)
        for key in sorted(set(keys))}


class _Cluster:
    """The few API calls staging makes, each failure one line naming the object."""

    def __init__(self, kubeconfig: str) -> None:
        try:
            self.api = config.new_client_from_config(config_file=kubeconfig)
        except (config.ConfigException, OSError) as error:
            raise ToolError(f"kubeconfig {kubeconfig}: {str(error).splitlines()[0]}") from None
        self.core, self.custom = client.CoreV1Api(self.api), client.CustomObjectsApi(self.api)

    def put_secret(self, namespace: str, data: dict[str, str]) -> None:
        """Create the Secret, or replace its data (keeping its labels and annotations, e.g. Argo CD's)."""
        try:
            live = self.core.read_namespaced_secret(SECRET, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            self.core.create_namespaced_secret(namespace, client.V1Secret(
                metadata=client.V1ObjectMeta(name=SECRET, namespace=namespace), type="Opaque", string_data=data))
            return
        body = client.V1Secret(metadata=client.V1ObjectMeta(
            name=SECRET, namespace=namespace, labels=live.metadata.labels, annotations=live.metadata.annotations,
            resource_version=live.metadata.resource_version), type=live.type or "Opaque", string_data=data)
        self.core.replace_namespaced_secret(SECRET, namespace, body)

    def states(self, namespace: str) -> dict[str, str]:
        """activeModelState by InferenceService name, "" before the controller wrote one."""
        try:
            items = self.custom.list_namespaced_custom_object(*ISVC[:2], namespace, ISVC[2])["items"]
        except ApiException as error:
            if error.status == 404:  # the CRD is not there yet: nothing of the profile to fix
                return {}
            raise
        return {i["metadata"]["name"]: str(_field(i, "status", "modelStatus", "states", "activeModelState") or "")
                for i in items}

    def recreate(self, namespace: str, services: list[SampleService], progress: Callable[[str], None]) -> None:
        """Delete the InferenceServices, then apply the manifests again.

        A load that failed is not retried for ModelMesh's LOAD_FAILURE_EXPIRY (15 min), so new vmodels are what
        loads the models now (the runtime pods read the replaced Secret at the next load). The manifests are
        applied as `mmgitops apply` applies them (same field manager), so applying the profile again leaves them
        unchanged."""
        names = [s.name for s in services]
        for name in names:
            try:
                self.custom.delete_namespaced_custom_object(*ISVC[:2], namespace, ISVC[2], name)
            except ApiException as error:
                if error.status != 404:
                    raise
        deadline = time.monotonic() + GONE_WITHIN_S
        while left := sorted(set(names) & set(self.states(namespace))):
            if time.monotonic() > deadline:
                raise ToolError(f"InferenceService(s) {', '.join(left)} in {namespace} still there "
                                f"{GONE_WITHIN_S:.0f} s after their deletion")
            time.sleep(0.5)
        for service in services:
            self.custom.patch_namespaced_custom_object(
                *ISVC[:2], namespace, ISVC[2], service.name, copy.deepcopy(service.body), field_manager=FIELD_MANAGER,
                force=True, _content_type="application/apply-patch+yaml")


def stage(root: Path, info: dict[str, Any], progress: Callable[[str], None]) -> list[str]:
    """Build and upload the profile's sample models to the local cluster's S3 server, point each sample namespace's
    `storage-config` Secret at it, and re-create the samples that had failed to load (on the placeholder storage).
    `info` is the local cluster's state (`cluster.read_state()`). Returns the InferenceServices staged for."""
    services = sample_services(root)
    if not services:
        return []
    if not info.get("kubeconfig"):
        raise ToolError("the local cluster's state names no kubeconfig: is the local cluster up?")
    entry = _local_s3(info)
    _upload(entry, services, progress)
    kube = _Cluster(str(info["kubeconfig"]))
    by_namespace: dict[str, list[SampleService]] = {}
    for service in services:
        by_namespace.setdefault(service.namespace, []).append(service)
    try:
        for namespace, members in by_namespace.items():
            # No labels: the profile's own Namespace (modelmesh-enabled and the rest) is Argo CD's to apply.
            Kube(kube.api).ensure_namespace(namespace)
            keys = sorted({s.storage_key for s in members})
            progress(f"secret {namespace}/{SECRET}: {', '.join(keys)} -> the local S3 server {entry.endpoint_url}")
            kube.put_secret(namespace, secret_data(entry, keys))
            states = kube.states(namespace)
            stuck = [s for s in members if s.name in states and states[s.name] not in SETTLED]
            if stuck:
                progress("re-creating " + ", ".join(f"{s.name} ({states[s.name] or 'no state yet'})" for s in stuck))
                kube.recreate(namespace, stuck, progress)
    except ApiException as error:
        raise ToolError(f"staging the profile's samples: {error.status} {error.reason}") from None
    except urllib3.exceptions.HTTPError as error:
        raise ToolError(f"staging the profile's samples: cannot reach the cluster: {error}") from None
    return [s.name for s in services]
