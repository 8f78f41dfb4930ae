"""The ModelMesh InferenceService rules: each behaviour of modelmesh-serving, odh-model-controller and KServe's
webhook they predict, with a twin that the same rule passes."""

from __future__ import annotations

from typing import Any

import pytest
from mmgitops.errors import Finding
from mmgitops.gitops.checks import rules
from mmgitops.gitops.checks.modelmesh import isvc as _isvc  # noqa: F401  (registers the rules)
from mmgitops.gitops.checks.modelmesh.context import MeshContext
from mmgitops.gitops.checks.modelmesh.selection import parse_storage_uri
from mmgitops.gitops.objects import K8sObject

pytestmark = pytest.mark.unit
NS = "models"
MINE = {"mm-isvc-runtime-match", "mm-isvc-silent-spec", "mm-isvc-unread-annotation", "mm-isvc-ignored-fields",
        "mm-isvc-name", "mm-isvc-legacy-predictor", "mm-clusterservingruntime"}
MODEL = "spec.predictor.model"


def inference_service(model: dict[str, Any] | None = None, *, name: str = "mnist", namespace: str = NS,
                      annotations: dict[str, str] | None = None, predictor: dict[str, Any] | None = None,
                      mode: str = "ModelMesh", **spec: Any) -> K8sObject:
    model = {"modelFormat": {"name": "onnx"}, "storageUri": "s3://models/onnx/mnist.onnx"} if model is None else model
    return K8sObject({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace,
                     "annotations": {"serving.kserve.io/deploymentMode": mode, **(annotations or {})}},
        "spec": {"predictor": {"model": model} if predictor is None else predictor, **spec}}, file="isvc.yaml")


def serving_runtime(name: str = "triton", formats: list[dict[str, Any]] | None = None, *, namespace: str = NS,
                    kind: str = "ServingRuntime", annotations: dict[str, str] | None = None, **spec: Any
                    ) -> K8sObject:
    formats = [{"name": "onnx", "version": "1", "autoSelect": True}] if formats is None else formats
    metadata: dict[str, Any] = {"name": name, "annotations": annotations or {}}
    if kind == "ServingRuntime":
        metadata["namespace"] = namespace
    body = {"supportedModelFormats": formats, "protocolVersions": ["grpc-v2"], "multiModel": True, **spec}
    return K8sObject({"apiVersion": "serving.kserve.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": body},
                     file="runtime.yaml")


def namespace(name: str = NS, enabled: bool = True) -> K8sObject:
    labels = {"modelmesh-enabled": "true"} if enabled else {}
    return K8sObject({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}},
                     file="namespace.yaml")


def rest_proxy_off() -> K8sObject:
    metadata = {"name": "model-serving-config", "namespace": "redhat-ods-applications"}
    return K8sObject({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
                      "data": {"config.yaml": "restProxy:\n  enabled: false\n"}}, file="config.yaml")


def check(obj: K8sObject, *others: K8sObject, rule: str | None = None) -> list[Finding]:
    """The findings of these rules (or of one) for obj, with the others rendered somewhere in the trees."""
    ctx = rules.Context(catalog=None, namespaces={}, mesh=MeshContext.from_objects([namespace(), *others]))
    return [f for r in rules.RULES if r.name in ({rule} if rule else MINE) for f in r.check(obj, ctx)]


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [f.line() for f in findings]
    return findings[0]


def model(name: str = "onnx", version: str | None = None, **fields: Any) -> dict[str, Any]:
    model_format = {"name": name} if version is None else {"name": name, "version": version}
    return {"modelFormat": model_format, "storageUri": "s3://models/m", **fields}


R1 = "mm-isvc-runtime-match"


# --- mm-isvc-runtime-match --------------------------------------------------------------------

def test_a_format_listed_without_autoselect_serves_no_isvc_that_names_no_runtime():
    listed = serving_runtime(formats=[{"name": "onnx", "version": "1"}])
    f = only(check(inference_service(), listed, rule=R1))
    assert (f.rule, f.field, f.severity) == (R1, f"{MODEL}.modelFormat.name", "error")
    assert "triton lists onnx without autoSelect: true" in f.message
    assert "FailedToLoad/NoSupportingRuntime" in f.message
    assert check(inference_service(), serving_runtime(), rule=R1) == []


def test_a_version_must_equal_the_runtime_version_string():
    f = only(check(inference_service(model(version="13")), serving_runtime(), rule=R1))
    assert (f.rule, f.field) == (R1, f"{MODEL}.modelFormat.version")
    assert "lists onnx with '1', not '13'" in f.message
    assert check(inference_service(model(version="1")), serving_runtime(), rule=R1) == []


def test_an_isvc_without_a_version_matches_any_autoselect_version():
    assert check(inference_service(model()), serving_runtime(), rule=R1) == []


def test_format_names_are_case_sensitive():
    f = only(check(inference_service(model("ONNX")), serving_runtime(), rule=R1))
    assert (f.rule, f.field) == (R1, f"{MODEL}.modelFormat.name")
    assert "triton lists 'onnx', not 'ONNX': names are case-sensitive" in f.message


def test_protocol_v2_needs_a_runtime_offering_grpc_v2():
    grpc_v1 = serving_runtime(protocolVersions=["grpc-v1"])
    f = only(check(inference_service(model(protocolVersion="v2")), grpc_v1, rule=R1))
    assert (f.rule, f.field) == (R1, f"{MODEL}.protocolVersion")
    assert "triton offers grpc-v1, not v2" in f.message
    assert check(inference_service(model(protocolVersion="v2")), serving_runtime(), rule=R1) == []


def test_protocol_v2_needs_the_rest_proxy_too():
    f = only(check(inference_service(model(protocolVersion="v2")), serving_runtime(), rest_proxy_off(), rule=R1))
    assert (f.rule, f.field) == (R1, f"{MODEL}.protocolVersion")
    assert "disables the REST proxy" in f.message
    assert check(inference_service(model(protocolVersion="grpc-v2")), serving_runtime(), rest_proxy_off(),
                 rule=R1) == []


def test_a_runtime_without_protocol_versions_serves_only_isvcs_that_set_none():
    bare = serving_runtime(protocolVersions=[])
    f = only(check(inference_service(model(protocolVersion="grpc-v2")), bare, rule=R1))
    assert "triton offers no protocolVersions, not grpc-v2" in f.message
    assert check(inference_service(model()), bare, rule=R1) == []


def test_an_explicit_runtime_that_lacks_the_format_gets_the_model_anyway():
    isvc = inference_service(model("sklearn", runtime="triton"))
    f = only(check(isvc, serving_runtime(), rule=R1))
    assert (f.rule, f.field, f.severity) == (R1, f"{MODEL}.runtime", "error")
    assert "triton does not list format 'sklearn'" in f.message and "ModelLoadFailed" in f.message
    no_autoselect = serving_runtime(formats=[{"name": "onnx"}])
    assert check(inference_service(model(runtime="triton")), no_autoselect, rule=R1) == []


def test_an_explicit_runtime_that_does_not_exist_is_not_recognized():
    f = only(check(inference_service(model(runtime="tritn")), serving_runtime(), rule=R1))
    assert (f.rule, f.field) == (R1, f"{MODEL}.runtime")
    assert "no ServingRuntime 'tritn' in namespace models (there: triton)" in f.message
    assert "FailedToLoad/RuntimeNotRecognized" in f.message
    assert check(inference_service(model(runtime="triton")), serving_runtime(), rule=R1) == []


@pytest.mark.parametrize(("spec", "state"), [({"disabled": True}, "disabled"),
                                             ({"multiModel": False}, "not multiModel: true")])
def test_an_explicit_runtime_that_is_disabled_or_single_model_is_not_recognized(spec, state):
    f = only(check(inference_service(model(runtime="triton")), serving_runtime(**spec), rule=R1))
    assert (f.rule, f.field) == (R1, f"{MODEL}.runtime")
    assert f"ServingRuntime triton is {state}" in f.message and "RuntimeNotRecognized" in f.message
    assert check(inference_service(model(runtime="triton")), serving_runtime(**spec), serving_runtime(), rule=R1) == []


def test_a_disabled_runtime_publishes_no_labels_for_auto_selection():
    f = only(check(inference_service(), serving_runtime(disabled=True), rule=R1))
    assert (f.rule, f.field) == (R1, f"{MODEL}.modelFormat.name")
    assert "triton lists onnx but is disabled" in f.message
    assert check(inference_service(), serving_runtime(disabled=False), rule=R1) == []


def test_a_namespaced_runtime_overrides_the_cluster_runtime_of_its_name():
    cluster = serving_runtime(kind="ClusterServingRuntime")
    f = only(check(inference_service(), cluster, serving_runtime(disabled=True), rule=R1))
    assert (f.rule, f.field) == (R1, f"{MODEL}.modelFormat.name")
    assert "triton lists onnx but is disabled" in f.message
    assert check(inference_service(), cluster, serving_runtime(name="other", formats=[]), rule=R1) == []


def test_a_single_model_cluster_runtime_is_not_in_the_runtime_set():
    single = serving_runtime(kind="ClusterServingRuntime", multiModel=False)
    f = only(check(inference_service(model(runtime="triton")), single, serving_runtime("other"), rule=R1))
    assert (f.rule, f.field) == (R1, f"{MODEL}.runtime")
    assert "no ServingRuntime 'triton' in namespace models (there: other)" in f.message
    multi = serving_runtime(kind="ClusterServingRuntime")
    assert check(inference_service(model(runtime="triton")), multi, serving_runtime("other"), rule=R1) == []


def test_several_matching_runtimes_are_a_warning():
    f = only(check(inference_service(), serving_runtime(), serving_runtime("triton-b"), rule=R1))
    assert (f.rule, f.field, f.severity) == (R1, f"{MODEL}.modelFormat.name", "warning")
    assert "2 runtimes serve format 'onnx' (triton, triton-b)" in f.message
    assert check(inference_service(model(runtime="triton")), serving_runtime(), serving_runtime("triton-b"),
                 rule=R1) == []


def test_a_namespace_without_runtimes_in_the_repository_is_a_warning():
    f = only(check(inference_service(), rule=R1))
    assert (f.rule, f.field, f.severity) == (R1, f"{MODEL}.modelFormat.name", "warning")
    assert "no ServingRuntime for namespace models is defined in this repository" in f.message
    assert check(inference_service(), serving_runtime(), rule=R1) == []


def test_a_namespace_that_is_not_modelmesh_enabled_is_left_to_isvc_modelmesh_namespace():
    isvc = inference_service(namespace="plain")
    assert check(isvc, namespace("plain", enabled=False), rule=R1) == []
    assert check(isvc, rule=R1) != []  # the namespace is not in the trees: it may be enabled


def test_any_rendered_variant_of_a_runtime_may_serve():
    base = serving_runtime(formats=[{"name": "onnx"}])
    assert check(inference_service(), base, serving_runtime(), rule=R1) == []


def test_the_legacy_framework_form_matches_the_framework_name_without_a_version():
    legacy = inference_service(predictor={"sklearn": {"storageUri": "s3://models/m"}})
    mlserver = serving_runtime("mlserver", [{"name": "sklearn", "version": "0", "autoSelect": True}])
    assert check(legacy, mlserver, rule=R1) == []
    f = only(check(legacy, serving_runtime(), rule=R1))
    assert (f.rule, f.field) == (R1, "spec.predictor.sklearn")
    assert "no multi-model ServingRuntime in namespace models serves format 'sklearn'" in f.message


def test_an_isvc_without_the_modelmesh_annotation_is_not_checked():
    assert check(inference_service(model("none"), mode="Serverless", name="Bad_Name")) == []


# --- mm-clusterservingruntime ----------------------------------------------------------------

def test_an_isvc_served_only_by_a_cluster_runtime_is_a_warning():
    cluster = serving_runtime(kind="ClusterServingRuntime")
    f = only(check(inference_service(), cluster, rule="mm-clusterservingruntime"))
    assert (f.rule, f.field, f.severity) == ("mm-clusterservingruntime", f"{MODEL}.modelFormat.name", "warning")
    assert "only ClusterServingRuntime triton serves it" in f.message
    assert check(inference_service(), cluster, serving_runtime(), rule="mm-clusterservingruntime") == []


# --- mm-isvc-silent-spec ---------------------------------------------------------------------

R5 = "mm-isvc-silent-spec"


@pytest.mark.parametrize(("uri", "says"), [
    ("hf://org/model", "has scheme 'hf'"), ("model-registry://m/v1", "has scheme 'model-registry'"),
    ("/mnt/models/mnist", "has no scheme (a local path?)"),
    (":bad", "does not parse as a URL (missing protocol scheme)"),
    ("s3://bucket:x/m", "invalid port")])
def test_a_storage_uri_the_controller_cannot_read_leaves_the_isvc_without_status(uri, says):
    f = only(check(inference_service(model(storageUri=uri)), rule=R5))
    assert (f.rule, f.field, f.severity) == (R5, f"{MODEL}.storageUri", "error")
    assert says in f.message and "never gets a status" in f.message


@pytest.mark.parametrize("uri", ["s3://models/onnx/mnist.onnx", "S3://models/m", "gs://b/m", "pvc://claim/m",
                                 "https://example.com/m.onnx", "https://acct.blob.core.windows.net/c/m"])
def test_the_storage_uris_the_controller_reads_pass(uri):
    assert check(inference_service(model(storageUri=uri)), rule=R5) == []


def test_a_bucket_only_storage_uri_loads_nothing():
    f = only(check(inference_service(model(storageUri="s3://models/")), rule=R5))
    assert (f.rule, f.field, f.severity) == (R5, f"{MODEL}.storageUri", "error")
    assert "empty model path" in f.message and "Error calling stat" in f.message
    assert check(inference_service(model(storageUri="s3://models/m")), rule=R5) == []


def test_neither_storage_uri_nor_storage_path_is_refused():
    f = only(check(inference_service({"modelFormat": {"name": "onnx"}, "storage": {"key": "s3"}}), rule=R5))
    assert (f.rule, f.field) == (R5, f"{MODEL}.storageUri")
    assert "neither storageUri nor storage.path" in f.message
    assert check(inference_service({"modelFormat": {"name": "onnx"}, "storage": {"path": "m"}}), rule=R5) == []


def test_storage_uri_and_storage_path_together_are_refused():
    f = only(check(inference_service(model(storage={"path": "m"})), rule=R5))
    assert (f.rule, f.field) == (R5, f"{MODEL}.storage.path")
    assert "both storageUri and storage.path" in f.message
    assert check(inference_service(model(storage={"key": "s3"})), rule=R5) == []


def test_a_storage_path_with_a_leading_slash_is_a_warning():
    f = only(check(inference_service({"modelFormat": {"name": "onnx"}, "storage": {"path": "/m"}}), rule=R5))
    assert (f.rule, f.field, f.severity) == (R5, f"{MODEL}.storage.path", "warning")
    assert "starts with '/'" in f.message
    assert check(inference_service({"modelFormat": {"name": "onnx"}, "storage": {"path": "m/"}}), rule=R5) == []


def test_a_model_spec_with_a_framework_spec_is_refused():
    isvc = inference_service(predictor={"model": model(), "sklearn": {"storageUri": "s3://b/m"}})
    f = only(check(isvc, rule=R5))
    assert (f.rule, f.field) == (R5, "spec.predictor.sklearn")
    assert "refuses predictor.model together with predictor.sklearn" in f.message
    assert check(inference_service(predictor={"model": model()}), rule=R5) == []


def test_a_model_spec_with_the_serving_runtime_annotation_is_refused():
    isvc = inference_service(annotations={"serving.kserve.io/servingRuntime": "triton"})
    f = only(check(isvc, rule=R5))
    assert (f.rule, f.field) == (R5, "metadata.annotations.serving.kserve.io/servingRuntime")
    assert "predictor.model.runtime" in f.message
    legacy = inference_service(predictor={"sklearn": {"storageUri": "s3://b/m"}},
                               annotations={"serving.kserve.io/servingRuntime": "mlserver"})
    assert check(legacy, rule=R5) == []


def test_a_predictor_without_model_or_known_framework_is_refused():
    f = only(check(inference_service(predictor={"paddle": {"storageUri": "s3://b/m"}}), rule=R5))
    assert (f.rule, f.field) == (R5, "spec.predictor")
    assert "no valid InferenceService predictor framework found" in f.message
    assert check(inference_service(predictor={"pmml": {"storageUri": "s3://b/m"}}), rule=R5) == []


def test_storage_uris_split_like_go_net_url():
    parsed = parse_storage_uri("s3://user@bucket/a/b?x=1#frag")
    assert (parsed.scheme, parsed.host, parsed.path) == ("s3", "bucket", "/a/b")
    assert parse_storage_uri("models:v1/x").scheme == "models"
    assert parse_storage_uri("my_models:1/x") == "first path segment in URL cannot contain colon"
    assert parse_storage_uri("s3://b/%zz") == "invalid URL escape"


# --- mm-isvc-unread-annotation ---------------------------------------------------------------

R9 = "mm-isvc-unread-annotation"


def test_a_priority_annotation_does_nothing():
    f = only(check(inference_service(annotations={"serving.kserve.io/priority": "high"}), rule=R9))
    assert (f.rule, f.field, f.severity) == (R9, "metadata.annotations.serving.kserve.io/priority", "warning")
    assert "no per-model priority" in f.message
    assert check(inference_service(annotations={"openshift.io/display-name": "MNIST"}), rule=R9) == []


def test_an_autoscaler_annotation_belongs_on_the_serving_runtime():
    f = only(check(inference_service(annotations={"serving.kserve.io/autoscalerClass": "hpa"}), rule=R9))
    assert (f.rule, f.field) == (R9, "metadata.annotations.serving.kserve.io/autoscalerClass")
    assert "put it on the ServingRuntime" in f.message
    assert check(inference_service(annotations={"serving.kserve.io/schemaPath": "s.json"}), rule=R9) == []


def test_the_secret_key_annotation_is_only_a_fallback_for_storage_key():
    annotations = {"serving.kserve.io/secretKey": "minio"}
    f = only(check(inference_service(model(storage={"key": "s3"}), annotations=annotations), rule=R9))
    assert (f.rule, f.field) == (R9, "metadata.annotations.serving.kserve.io/secretKey")
    assert "spec.predictor.model.storage.key wins" in f.message
    assert check(inference_service(model(), annotations=annotations), rule=R9) == []


# --- mm-isvc-ignored-fields ------------------------------------------------------------------

R10 = "mm-isvc-ignored-fields"


def test_replica_counts_on_the_isvc_do_nothing():
    isvc = inference_service(predictor={"model": model(), "minReplicas": 2, "timeout": 30})
    f = only(check(isvc, rule=R10))
    assert (f.rule, f.field, f.severity) == (R10, "spec.predictor.minReplicas", "warning")
    assert "the ServingRuntime's replicas" in f.message


def test_model_resources_belong_to_the_serving_runtime_containers():
    f = only(check(inference_service(model(resources={"limits": {"memory": "1Gi"}})), rule=R10))
    assert (f.rule, f.field) == (R10, f"{MODEL}.resources")
    assert "ServingRuntime's containers" in f.message
    assert check(inference_service(model(storage={"key": "k", "parameters": {"bucket": "b"}})), rule=R10) == []


def test_a_transformer_is_never_deployed():
    f = only(check(inference_service(transformer={"containers": []}), rule=R10))
    assert (f.rule, f.field) == (R10, "spec.transformer")
    assert "only the predictor's model" in f.message
    assert check(inference_service(model(protocolVersion="grpc-v2", runtime="triton", storage={"key": "k"})),
                 rule=R10) == []


# --- mm-isvc-name ----------------------------------------------------------------------------

R13 = "mm-isvc-name"


def test_a_name_the_kserve_webhook_refuses_is_a_warning():
    f = only(check(inference_service(name="1mnist"), rule=R13))
    assert (f.rule, f.field, f.severity) == (R13, "metadata.name", "warning")
    assert "KServe's validating webhook refuses it" in f.message
    assert check(inference_service(name="mnist-1"), rule=R13) == []


def test_a_name_the_api_server_refuses_is_an_error():
    f = only(check(inference_service(name="Mnist_1"), rule=R13))
    assert (f.rule, f.field, f.severity) == (R13, "metadata.name", "error")
    assert "not a DNS-1123 subdomain" in f.message
    assert check(inference_service(name="mnist"), rule=R13) == []


def test_a_route_host_label_over_63_characters_is_refused():
    long_name = "m" * 57  # 57 + 1 + len("models") = 64
    routed = serving_runtime(annotations={"enable-route": "true"})
    f = only(check(inference_service(name=long_name), routed, rule=R13))
    assert (f.rule, f.field, f.severity) == (R13, "metadata.name", "error")
    assert "64 > 63 characters" in f.message
    assert check(inference_service(name=long_name), serving_runtime(), rule=R13) == []
    assert check(inference_service(name="m" * 56), routed, rule=R13) == []


# --- mm-isvc-legacy-predictor ----------------------------------------------------------------

def test_the_legacy_framework_form_breaks_odh_model_controller():
    legacy = inference_service(predictor={"sklearn": {"storageUri": "s3://models/m"}})
    f = only(check(legacy, rule="mm-isvc-legacy-predictor"))
    assert (f.rule, f.field, f.severity) == ("mm-isvc-legacy-predictor", "spec.predictor.sklearn", "error")
    assert "panics on every reconcile" in f.message and "modelFormat.name: sklearn" in f.message
    assert check(inference_service(model("sklearn")), rule="mm-isvc-legacy-predictor") == []


# --- the repository's own samples ------------------------------------------------------------

def test_an_explicit_runtime_listing_the_format_gives_no_finding_of_any_rule():
    sample = inference_service({"modelFormat": {"name": "onnx"}, "runtime": "triton",
                                "storage": {"key": "localMinIO", "path": "onnx/mnist.onnx"}}, name="onnx-mnist")
    assert check(sample, serving_runtime()) == []
