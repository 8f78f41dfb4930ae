"""The ModelMesh storage rules (mmgitops/gitops/checks/modelmesh/storage.py) on inline objects: each behaviour with a
broken object and a good twin, and no finding ever carrying a Secret value."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mmgitops.errors import Finding
from mmgitops.gitops.checks import rules
from mmgitops.gitops.checks.modelmesh import storage
from mmgitops.gitops.checks.modelmesh.context import MeshContext
from mmgitops.gitops.objects import K8sObject

pytestmark = pytest.mark.unit

NS = "models"
FAKE_SECRET = "FAKE-SECRET-d3adb33f-not-real"  # must never appear in a finding
S3 = {"type": "s3", "access_key_id": FAKE_SECRET, "secret_access_key": FAKE_SECRET,
      "endpoint_url": "http://minio.minio.svc:9000", "region": "us-south", "default_bucket": "models"}
DC_LABELS = {"opendatahub.io/managed": "true", "opendatahub.io/dashboard": "true"}
AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_ENDPOINT", "AWS_S3_BUCKET", "AWS_DEFAULT_REGION")


# --- fixtures --------------------------------------------------------------------------------------------------

def obj(body: dict[str, Any]) -> K8sObject:
    return K8sObject(body, file="x.yaml")


def namespace(name: str = NS, labels: dict[str, str] | None = None) -> K8sObject:
    return obj({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": {"modelmesh-enabled": "true"} if labels is None else labels}})


def storage_config(entries: dict[str, Any], ns: str = NS, labels: dict[str, str] | None = None,
                   string_data: bool = False) -> K8sObject:
    """A storage-config Secret as a secretGenerator renders it (base64 `data`), or with `stringData`."""
    texts = {k: v if isinstance(v, str) else json.dumps(v) for k, v in entries.items()}
    values = texts if string_data else {k: base64.b64encode(v.encode()).decode() for k, v in texts.items()}
    return obj({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "storage-config", "namespace": ns, "labels": labels or {}},
                "stringData" if string_data else "data": values})


def data_connection(name: str = "my-dc", kind: str | None = "s3", keys: tuple[str, ...] = AWS,
                    ns: str = NS) -> K8sObject:
    annotations = {"opendatahub.io/connection-type": kind} if kind else {}
    return obj({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": ns, "labels": dict(DC_LABELS), "annotations": annotations},
                "data": {k: base64.b64encode(FAKE_SECRET.encode()).decode() for k in keys}})


def isvc(storage_spec: dict[str, Any] | None = None, uri: str | None = None, annotations: dict[str, str] | None = None,
         mode: str = "ModelMesh") -> K8sObject:
    model: dict[str, Any] = {"modelFormat": {"name": "sklearn"}}
    if storage_spec is not None:
        model["storage"] = storage_spec
    if uri is not None:
        model["storageUri"] = uri
    return obj({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": "m", "namespace": NS,
                             "annotations": {"serving.kserve.io/deploymentMode": mode, **(annotations or {})}},
                "spec": {"predictor": {"model": model}}})


def runtime(ns: str = NS, **spec: Any) -> K8sObject:
    body = {"multiModel": True, "grpcEndpoint": "port:8085", "builtInAdapter": {"serverType": "mlserver"}, **spec}
    return obj({"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
                "metadata": {"name": "mlserver", "namespace": ns}, "spec": body})


def serving_config(text: str) -> K8sObject:
    return obj({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "model-serving-config", "namespace": "redhat-ods-applications"},
                "data": {"config.yaml": text}})


def context(*objects: K8sObject) -> rules.Context:
    return rules.Context(catalog=None, namespaces={}, mesh=MeshContext.from_objects(objects))


def run(check: Callable[[K8sObject, rules.Context], Iterator[Finding]], target: K8sObject,
        *others: K8sObject) -> list[Finding]:
    return list(check(target, context(target, *others)))


def only(findings: list[Finding], rule: str, field: str, severity: str = "error") -> Finding:
    assert len(findings) == 1, findings
    assert (findings[0].rule, findings[0].field, findings[0].severity) == (rule, field, severity)
    return findings[0]


KEYED = {"key": "localMinIO", "path": "sklearn/model.joblib"}
RESOLVABLE = "mm-storage-resolvable"


# --- mm-storage-resolvable ----------------------------------------------------------------------------------------

def test_storage_key_missing_from_storage_config_fails_the_load():
    bad = run(storage.storage_resolvable, isvc({**KEYED, "key": "localS3"}), storage_config({"localMinIO": S3}))
    message = only(bad, RESOLVABLE, "spec.predictor.model.storage.key").message
    assert "storage.key localS3 is not a key of storage-config in namespace models (keys: localMinIO)" in message
    assert '"Did not find storage config for key localS3"' in message
    assert run(storage.storage_resolvable, isvc(KEYED), storage_config({"localMinIO": S3})) == []


def test_secret_key_annotation_is_the_key_when_storage_key_is_absent():
    spec = {"path": "m.joblib"}
    bad = run(storage.storage_resolvable, isvc(spec, annotations={"serving.kserve.io/secretKey": "gone"}),
              storage_config({"localMinIO": S3}))
    assert "annotation serving.kserve.io/secretKey gone is not a key" in only(
        bad, RESOLVABLE, "metadata.annotations.serving.kserve.io/secretKey").message
    good = isvc(spec, annotations={"serving.kserve.io/secretKey": "localMinIO"})
    assert run(storage.storage_resolvable, good, storage_config({"localMinIO": S3})) == []


def test_s3_uri_without_key_needs_a_default_s3_entry():
    bad = run(storage.storage_resolvable, isvc(uri="s3://models/m.joblib"), storage_config({"localMinIO": S3}))
    message = only(bad, RESOLVABLE, "spec.predictor.model.storageUri").message
    assert "no default_s3 entry" in message and "missing required string configuration 'access_key_id'" in message
    assert run(storage.storage_resolvable, isvc(uri="s3://models/m.joblib"), storage_config({"default_s3": S3})) == []


def test_path_without_key_or_type_needs_a_default_entry():
    bad = run(storage.storage_resolvable, isvc({"path": "m.joblib"}), storage_config({"localMinIO": S3}))
    message = only(bad, RESOLVABLE, "spec.predictor.model.storage").message
    assert "no default entry" in message and '"Predictor Storage field missing"' in message
    assert run(storage.storage_resolvable, isvc({"path": "m.joblib"}), storage_config({"default": S3})) == []


@pytest.mark.parametrize(("uri", "key"), [
    ("s3://b/m", "default_s3"), ("gs://b/m", "default_gcs"), ("pvc://claim/m", "default_pvc"),
    ("https://example.com/m", "default_http"), ("https://acct.blob.core.windows.net/c/m", "default_azure"),
    (None, "default")])
def test_default_key_follows_the_storage_type_the_uri_gives(uri, key):
    load = storage._load(isvc(None if uri else {"path": "m"}, uri=uri))
    assert load is not None and storage._lookup(load) == key


def test_s3_entry_needs_every_credential_field():
    entry = {k: v for k, v in S3.items() if k != "region"}
    bad = run(storage.storage_resolvable, isvc(KEYED), storage_config({"localMinIO": entry}))
    message = only(bad, RESOLVABLE, "spec.predictor.model.storage.key").message
    assert "entry localMinIO of storage-config lacks region" in message
    assert "missing required string configuration 'region'" in message


def test_s3_field_that_is_not_a_string_counts_as_missing():
    bad = run(storage.storage_resolvable, isvc(KEYED), storage_config({"localMinIO": {**S3, "region": 1}}))
    assert "missing required string configuration 'region'" in only(
        bad, RESOLVABLE, "spec.predictor.model.storage.key").message


def test_s3_needs_a_bucket_from_the_entry_uri_or_parameters():
    entry = {k: v for k, v in S3.items() if k != "default_bucket"}
    bad = run(storage.storage_resolvable, isvc(KEYED), storage_config({"localMinIO": entry}))
    assert "required configuration 'bucket' missing from command" in only(
        bad, RESOLVABLE, "spec.predictor.model.storage.key").message
    with_bucket = isvc({**KEYED, "parameters": {"bucket": "models"}})
    assert run(storage.storage_resolvable, with_bucket, storage_config({"localMinIO": entry})) == []
    from_uri = isvc({"key": "localMinIO"}, uri="s3://models/m.joblib")
    assert run(storage.storage_resolvable, from_uri, storage_config({"localMinIO": entry})) == []


def test_default_bucket_counts_only_in_an_entry_typed_s3():
    entry = {k: v for k, v in S3.items() if k != "type"}  # the type comes from the URI, too late for the copy
    bad = run(storage.storage_resolvable, isvc({"key": "localMinIO", "parameters": {"type": "s3"}, "path": "m"}),
              storage_config({"localMinIO": entry}))
    assert "'bucket' missing" in only(bad, RESOLVABLE, "spec.predictor.model.storage.key").message


def test_storage_type_must_be_a_registered_provider():
    bad = run(storage.storage_resolvable, isvc(KEYED), storage_config({"localMinIO": {**S3, "type": "minio"}}))
    message = only(bad, RESOLVABLE, "spec.predictor.model.storage.key").message
    assert "has storage type minio" in message and "no provider registered for repositories of type 'minio'" in message
    by_parameter = isvc({**KEYED, "parameters": {"type": "minio"}})
    bad = run(storage.storage_resolvable, by_parameter, storage_config({"localMinIO": S3}))
    only(bad, RESOLVABLE, "spec.predictor.model.storage.parameters.type")


def test_storage_config_outside_the_repository_is_a_warning():
    bad = run(storage.storage_resolvable, isvc(KEYED))
    assert "not defined in this repository" in only(
        bad, RESOLVABLE, "spec.predictor.model.storage.key", "warning").message
    assert run(storage.storage_resolvable, isvc(uri="pvc://claim/m.joblib")) == []  # the URI alone suffices


def test_data_connections_stand_in_for_a_missing_storage_config():
    assert run(storage.storage_resolvable, isvc({**KEYED, "key": "my-dc"}), data_connection()) == []
    bad = run(storage.storage_resolvable, isvc(KEYED), data_connection())
    assert "(keys: my-dc)" in only(bad, RESOLVABLE, "spec.predictor.model.storage.key", "warning").message


def test_isvc_not_in_modelmesh_mode_is_ignored():
    assert run(storage.storage_resolvable, isvc({**KEYED, "key": "gone"}, mode="Serverless"),
               storage_config({"localMinIO": S3})) == []


# --- mm-namespace-ready -------------------------------------------------------------------------------------------

READY = "mm-namespace-ready"


def test_runtime_in_namespace_without_modelmesh_enabled_label_is_deleted():
    bad = run(storage.namespace_ready, runtime(), namespace(labels={}), storage_config({"localMinIO": S3}))
    message = only(bad, READY, "metadata.namespace").message
    assert "lacks label modelmesh-enabled" in message and "modelmesh-serving-mlserver" in message
    assert run(storage.namespace_ready, runtime(), namespace(), storage_config({"localMinIO": S3})) == []


def test_modelmesh_enabled_must_be_exactly_true():
    bad = run(storage.namespace_ready, runtime(), namespace(labels={"modelmesh-enabled": "True"}),
              storage_config({"localMinIO": S3}))
    assert "has modelmesh-enabled: 'True'" in only(bad, READY, "metadata.namespace").message


def test_controller_namespace_is_enabled_without_the_label():
    ns = "redhat-ods-applications"
    good = run(storage.namespace_ready, runtime(ns), namespace(ns, {}), storage_config({"s": S3}, ns=ns))
    assert good == []
    bad = run(storage.namespace_ready, runtime(ns), namespace(ns, {"modelmesh-enabled": "false"}),
              storage_config({"s": S3}, ns=ns))
    only(bad, READY, "metadata.namespace")


def test_namespace_outside_the_repository_is_a_warning():
    bad = run(storage.namespace_ready, runtime(), storage_config({"localMinIO": S3}))
    assert "not defined in this repository" in only(bad, READY, "metadata.namespace", "warning").message


def test_runtime_without_storage_config_or_data_connection_warns_of_the_mount():
    bad = run(storage.namespace_ready, runtime(), namespace())
    assert 'secret "storage-config" not found' in only(bad, READY, "metadata.namespace", "warning").message
    assert run(storage.namespace_ready, runtime(), namespace(), data_connection()) == []
    no_mount = runtime(builtInAdapter=None, storageHelper={"disabled": True})
    assert run(storage.namespace_ready, no_mount, namespace()) == []


def test_single_model_runtime_is_ignored():
    assert run(storage.namespace_ready, runtime(multiModel=False), namespace(labels={})) == []


# --- mm-storage-config-owner --------------------------------------------------------------------------------------

OWNER = "mm-storage-config-owner"


def test_managed_label_hands_storage_config_to_odh_model_controller():
    bad = run(storage.storage_config_owner, storage_config({"localMinIO": S3}, labels=DC_LABELS | {"x": "y"}),
              data_connection())
    message = only(bad, OWNER, "metadata.labels.opendatahub.io/managed").message
    assert "keys lost: localMinIO" in message
    assert run(storage.storage_config_owner, storage_config({"localMinIO": S3, "my-dc": S3}), data_connection()) == []


def test_unlabelled_storage_config_never_receives_data_connections():
    bad = run(storage.storage_config_owner, storage_config({"localMinIO": S3}), data_connection())
    assert "never adds data connection(s) my-dc" in only(bad, OWNER, "data", "warning").message


def test_data_connection_without_connection_type_gets_an_empty_type():
    bad = run(storage.storage_config_owner, data_connection(kind=None))
    message = only(bad, OWNER, "metadata.annotations.opendatahub.io/connection-type", "warning").message
    assert "no provider registered for repositories of type ''" in message
    assert run(storage.storage_config_owner, data_connection()) == []


def test_s3_data_connection_without_aws_keys_gives_empty_fields():
    bad = run(storage.storage_config_owner, data_connection(keys=AWS[:-1]))
    assert "lacks AWS_DEFAULT_REGION" in only(bad, OWNER, "data", "warning").message


# --- mm-storage-entry-shape ---------------------------------------------------------------------------------------

SHAPE = "mm-storage-entry-shape"


def test_entry_with_a_non_string_field_blocks_every_runtime():
    secret = storage_config({"web": {"type": "http", "url": "https://x", "headers": {"A": "b"}}})
    message = only(run(storage.entry_shape, secret), SHAPE, "data.web").message
    assert "headers (object)" in message and "Could not parse storage configuration json" in message
    assert run(storage.entry_shape, storage_config({"web": {"type": "http", "url": "https://x"}})) == []


def test_entry_that_is_not_a_json_object_blocks_every_runtime():
    assert "not an object" in only(run(storage.entry_shape, storage_config({"l": ["s3"]})), SHAPE, "data.l").message
    only(run(storage.entry_shape, storage_config({"t": "type=s3"}, string_data=True)), SHAPE, "stringData.t")


def test_json_null_passes_the_controller():
    assert run(storage.entry_shape, storage_config({"n": "null", "v": {"type": "s3", "region": None}})) == []


# --- mm-pvc-storage -----------------------------------------------------------------------------------------------

PVC = "mm-pvc-storage"


def test_claim_not_in_storage_config_is_not_mounted_without_allow_any_pvc():
    bad = run(storage.pvc_storage, isvc(uri="pvc://claim/m.joblib"), storage_config({"localMinIO": S3}))
    message = only(bad, PVC, "spec.predictor.model.storageUri").message
    assert "claim claim is not mounted" in message and '{"type":"pvc","name":"claim"}' in message
    listed = storage_config({"localMinIO": S3, "vol": {"type": "pvc", "name": "claim"}})
    assert run(storage.pvc_storage, isvc(uri="pvc://claim/m.joblib"), listed) == []
    allowed = serving_config("allowAnyPVC: true\n")
    assert run(storage.pvc_storage, isvc(uri="pvc://claim/m.joblib"), allowed, storage_config({"s": S3})) == []


def test_claim_named_by_its_own_entry_is_mounted():
    spec = {"key": "vol", "path": "m.joblib"}
    assert run(storage.pvc_storage, isvc(spec), storage_config({"vol": {"type": "pvc", "name": "claim"}})) == []


def test_claim_without_storage_config_in_the_repository_is_a_warning():
    bad = run(storage.pvc_storage, isvc({"path": "m", "parameters": {"type": "pvc", "name": "claim"}}))
    assert "not defined in this repository" in only(
        bad, PVC, "spec.predictor.model.storage.parameters.name", "warning").message


# --- secrets ------------------------------------------------------------------------------------------------------

def test_no_finding_carries_a_secret_value():
    broken = {"a": {**S3, "region": 1}, "b": [FAKE_SECRET], "c": {"type": "minio", "secret_access_key": FAKE_SECRET},
              "d": {k: v for k, v in S3.items() if k != "region"}, "e": FAKE_SECRET}
    objects = [storage_config(broken, labels=dict(DC_LABELS)), data_connection(kind=None, ns="other"),
               data_connection("dc2", keys=AWS[:2], ns="other"), runtime(ns="other"), namespace(),
               namespace("other", labels={"modelmesh-enabled": "no"})]
    objects += [isvc({"key": k, "path": "m"}) for k in (*broken, "gone")]
    objects += [isvc(uri="s3://b/m"), isvc(uri="pvc://claim/m")]
    ctx = context(*objects)
    checks = (storage.storage_resolvable, storage.namespace_ready, storage.storage_config_owner, storage.entry_shape,
              storage.pvc_storage)
    findings = [f for o in objects for check in checks for f in check(o, ctx)]
    assert len(findings) >= 10, findings
    for f in findings:
        assert FAKE_SECRET not in f.message and FAKE_SECRET not in f.field, f


# --- how objects arrive -------------------------------------------------------------------------------------------

def test_a_namespace_modelmesh_does_not_serve_has_no_storage_finding():
    # Nothing is pulled there; isvc-modelmesh-namespace names the missing label.
    objects = [namespace(labels={"modelmesh-enabled": "no"}), isvc(uri="s3://b/m")]
    assert run(storage.storage_resolvable, objects[1], *objects) == []


def test_legacy_framework_predictor_is_read_like_the_model_spec():
    legacy = isvc(uri="s3://models/m.joblib")
    legacy.body["spec"]["predictor"] = {"sklearn": legacy.body["spec"]["predictor"]["model"]}
    bad = run(storage.storage_resolvable, legacy, storage_config({"localMinIO": S3}))
    assert "no default_s3 entry" in only(bad, RESOLVABLE, "spec.predictor.sklearn.storageUri").message


def test_kustomize_wrapped_base64_reads_like_the_api_server():
    secret = storage_config({"localMinIO": S3})
    value = secret.body["data"]["localMinIO"]
    secret.body["data"]["localMinIO"] = "\n".join(value[i:i + 76] for i in range(0, len(value), 76)) + "\n"
    assert run(storage.entry_shape, secret) == []
    assert run(storage.storage_resolvable, isvc(KEYED), secret) == []
