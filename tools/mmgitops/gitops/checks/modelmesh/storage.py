"""ModelMesh storage rules: will the puller find the storage an InferenceService names, will the controller run the
namespace's runtimes, and who owns `storage-config`. Each check ports the upstream code its rule's `source` names
(MS = modelmesh-serving, RA = modelmesh-runtime-adapter, OMC = odh-model-controller; all rhoai-2.25).

Only key names, field names and storage types are read from `storage-config` (context.StorageEntry): no message
here ever holds a Secret value.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from mmgitops.errors import Finding
from mmgitops.gitops.checks.modelmesh.context import (
    CONTROLLER_NAMESPACE,
    DATA_CONNECTION_LABELS,
    SERVING,
    NamespaceView,
    StorageEntry,
    storage_entries,
)
from mmgitops.gitops.checks.modelmesh.selection import FRAMEWORKS, parse_storage_uri
from mmgitops.gitops.checks.rules import Context, finding, rule
from mmgitops.gitops.objects import K8sObject, dig

SECRET_KEY_ANNOTATION = "serving.kserve.io/secretKey"
PROVIDERS = ("s3", "gcs", "azure", "http", "pvc")  # RA pullman/storageproviders/*/provider.go init
S3_CREDENTIALS = ("access_key_id", "secret_access_key", "endpoint_url", "region")  # s3/provider.go NewRepository
# What OMC secret_controller.go newStorageSecret writes per data connection: these fields, all strings.
OMC_FIELDS = ("type", "access_key_id", "secret_access_key", "endpoint_url", "default_bucket", "bucket", "region")
OMC_AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_ENDPOINT", "AWS_S3_BUCKET", "AWS_DEFAULT_REGION")
OMC_STORAGE_SECRET = "storage-config"  # OMC constants.DefaultStorageConfig: fixed, whatever storageSecretName says
MANAGED = "opendatahub.io/managed"
CONNECTION_TYPE = "opendatahub.io/connection-type"


@dataclass
class Load:
    """What the controller sends the puller for one ModelMesh InferenceService (MS processInferenceServiceStorage)."""

    prefix: str  # spec.predictor.model or spec.predictor.<framework>
    uri: str | None
    params: dict[str, str]  # storage.parameters, overridden by what the storageUri says
    user_params: set[str]  # the names storage.parameters itself sets
    key: str | None = None
    key_field: str = ""


def _uri_params(uri: str) -> dict[str, str] | None:
    """The storage a storageUri names, from the URI as Go's net/url parses it (selection.parse_storage_uri, the
    silent-spec rule's parser too); None where the controller refuses the URI (that rule reports it)."""
    parts = parse_storage_uri(uri)
    if isinstance(parts, str):
        return None
    if parts.scheme in ("pvc", "s3", "gs"):
        kind = {"pvc": "pvc", "s3": "s3", "gs": "gcs"}[parts.scheme]
        return {"type": kind, "name" if kind == "pvc" else "bucket": parts.host}
    if parts.scheme in ("http", "https") and parts.host.endswith("blob.core.windows.net"):
        return {"type": "azure", "container": parts.path.lstrip("/").split("/")[0],
                "account_name": parts.host.split(".")[0]}
    return {"type": "http", "url": uri} if parts.scheme in ("http", "https") else None


def _load(obj: K8sObject) -> Load | None:
    """The storage request of a ModelMesh InferenceService; None for anything else or a spec the controller refuses."""
    predictor = dig(obj.body, "spec", "predictor")
    if not (obj.kind == "InferenceService" and obj.group == SERVING and isinstance(predictor, dict)
            and obj.annotations.get("serving.kserve.io/deploymentMode") == "ModelMesh"):
        return None
    name = next((n for n in ("model", *FRAMEWORKS) if isinstance(predictor.get(n), dict)), None)  # model spec wins
    if name is None:
        return None
    spec = predictor[name]
    storage = spec.get("storage") if isinstance(spec.get("storage"), dict) else {}
    uri = spec.get("storageUri")
    if (uri is None) == (storage.get("path") is None):  # neither or both: a controller error, no load at all
        return None
    uri_params = _uri_params(str(uri)) if uri is not None else {}
    given = storage.get("parameters") if isinstance(storage.get("parameters"), dict) else {}
    if uri_params is None:
        return None
    load = Load(f"spec.predictor.{name}", None if uri is None else str(uri),
                {**{str(k): str(v) for k, v in given.items()}, **uri_params}, {str(k) for k in given})
    if storage.get("key") is not None:  # storage.key first, the annotation only without it
        load.key, load.key_field = str(storage["key"]), f"{load.prefix}.storage.key"
    elif SECRET_KEY_ANNOTATION in obj.annotations:
        load.key = str(obj.annotations[SECRET_KEY_ANNOTATION])
        load.key_field = f"metadata.annotations.{SECRET_KEY_ANNOTATION}"
    return load


def _lookup(load: Load) -> str:
    """The storage-config key the puller reads (RA puller.go): the request's key, else default or default_<type>."""
    if load.key is not None:
        return load.key
    return f"default_{load.params['type']}" if load.params.get("type") else "default"


def _storage(view: NamespaceView) -> tuple[dict[str, StorageEntry] | None, bool]:
    """The namespace's storage-config and whether this repository defines it whole. Without one, OMC builds it from
    the data connections, one entry each; the cluster may hold more of those, so it is not whole."""
    if view.storage is not None:
        return view.storage, True
    if view.data_connections:
        return {dc.name: StorageEntry(dc.name, dc.annotations.get(CONNECTION_TYPE, ""),
                                      dict.fromkeys(OMC_FIELDS, "string")) for dc in view.data_connections}, False
    return None, False


def _is_object(entry: StorageEntry) -> bool:
    return bool(entry.fields) or not entry.shape or entry.shape.startswith("is a JSON null")


def _pulled(load: Load, entry: StorageEntry | None) -> tuple[str | None, set[str]]:
    """The storage type and the string fields the puller ends with: the entry (puller/config.go copies an s3
    entry's default_bucket to bucket), then the request's parameters over it (puller.go ApplyParameterOverrides)."""
    fields = entry.fields if entry is not None else {}
    have = {name for name, kind in fields.items() if kind == "string"}
    if entry and entry.type == "s3" and "bucket" not in fields and fields.get("default_bucket") == "string":
        have.add("bucket")
    have |= set(load.params)
    if "type" in load.params:
        return load.params["type"], have
    return (entry.type if entry and fields.get("type") == "string" else None), have


def _provider_error(kind: str | None, have: set[str]) -> tuple[list[str], str]:
    """What the puller lacks for `kind`, and its error for the first; ([], '') when the pull can start, and no field
    but an error for a type it has no provider for."""
    if kind is None:
        return ["type"], "Predictor Storage field missing"
    if kind not in PROVIDERS:
        return [], f"no provider registered for repositories of type '{kind}'"
    if kind == "s3" and any(f not in have for f in S3_CREDENTIALS):
        missing = [f for f in (*S3_CREDENTIALS, "bucket") if f not in have]
        return missing, f"missing required string configuration '{missing[0]}'"
    if kind == "azure":
        missing = [f for f in ("account_name", "container") if f not in have]
        return missing, "both the Azure account name and storage container name must be specified" if missing else ""
    need = {"s3": "bucket", "gcs": "bucket", "http": "url", "pvc": "name"}[kind]
    return ([need], f"required configuration '{need}' missing from command") if need not in have else ([], "")


@rule("mm-storage-resolvable", "a ModelMesh InferenceService loads only if the puller finds its storage",
      source="RA puller/puller.go ProcessLoadModelRequest, puller/config.go GetStorageConfiguration, "
             "pullman/storageproviders/*/provider.go; MS inferenceservice_registry.go processInferenceServiceStorage",
      symptom="ISVC FailedToLoad/ModelLoadFailed: \"Did not find storage config for key K\", \"missing required "
              "string configuration 'region'\", \"required configuration 'bucket' missing from command\"",
      fix="use a key of the namespace's storage-config (or add default_<type>); S3 entries need access_key_id, "
          "secret_access_key, endpoint_url, region as strings and a bucket")
def storage_resolvable(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors RA model-serving-puller/puller/puller.go ProcessLoadModelRequest: key or default lookup, parameter
    overrides, then what the pullman provider needs."""
    load = _load(obj)
    view = ctx.mesh.namespace(obj.namespace)
    if load is None or (view.labels is not None and view.labels.get("modelmesh-enabled") != "true"):
        return  # nothing is pulled in a namespace ModelMesh does not serve: isvc-modelmesh-namespace says so
    ns, name = obj.namespace, "mm-storage-resolvable"
    entries, whole = _storage(view)
    where = f"storage-config in namespace {ns} " + (f"(keys: {', '.join(sorted(entries)) or 'none'})"
                                                   if entries is not None else f"(not defined in {ctx.mesh.source})")
    lookup = _lookup(load)
    entry = (entries or {}).get(lookup)
    if load.key is not None and (entry is None or not _is_object(entry)):
        said = "storage.key" if load.key_field.endswith(".key") else f"annotation {SECRET_KEY_ANNOTATION}"
        problem, fix = (f"is not a key of {where}", "add the entry or use an existing key") if entry is None else \
            (f"names an entry that {entry.shape}", "make the entry a JSON object")
        yield finding(obj, load.key_field, f"{said} {load.key} {problem}; the puller fails the load: \"Did not find "
                      f"storage config for key {load.key}\"; {fix}", name, "error" if whole or entry else "warning")
        return
    if entry is not None and not _is_object(entry):
        entry = None  # an unparsable default is skipped like a missing one
    kind, have = _pulled(load, entry)
    missing, error = _provider_error(kind, have)
    if not error:
        return
    what = f"entry {lookup} of storage-config" if entry else f"with no storage.key and no {lookup} entry in {where}, " \
        "the request"
    at = load.key_field or f"{load.prefix}.{'storageUri' if load.uri is not None else 'storage'}"
    if not missing and "type" in load.user_params:
        at = f"{load.prefix}.storage.parameters.type"
    fault = f"lacks {', '.join(missing)}" if missing else f"has storage type {kind}"
    fix = f"add {', '.join(missing)} as string field(s) to the entry or storage.parameters"
    if not missing or (missing == ["type"] and entry):
        fix = "give a storage type the puller knows (s3, gcs, azure, http, pvc)"
    elif not entry:
        fix = f"set storage.key or add a {lookup} entry"
    yield finding(obj, at, f"{what} {fault}; the puller fails the load: \"{error}\"; {fix}", name,
                  "error" if entry is not None or whole else "warning")


@rule("mm-namespace-ready", "the controller runs a multi-model runtime only in a modelmesh-enabled namespace, "
      "and its pods mount storage-config",
      source="MS controllers/util.go modelMeshEnabled; servingruntime_controller.go Reconcile (deletes when not "
             "enabled); modelmesh/runtime.go addVolumesToDeployment, modelmesh/util.go useStorageHelper",
      symptom="no modelmesh-serving-<runtime> Deployment, ISVCs never load; or runtime pods ContainerCreating: "
              "MountVolume.SetUp failed: secret \"storage-config\" not found",
      fix="label the namespace modelmesh-enabled: \"true\"; give it a storage-config Secret or a data connection")
def namespace_ready(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors MS controllers/util.go modelMeshEnabled and modelmesh/runtime.go addVolumesToDeployment (the
    storage-config volume of a runtime with a built-in adapter or the storage helper)."""
    spec = obj.body.get("spec")
    if not (obj.kind == "ServingRuntime" and obj.group == SERVING and isinstance(spec, dict)
            and spec.get("multiModel") is True and spec.get("disabled") is not True):
        return
    ns, name, view = obj.namespace, "mm-namespace-ready", ctx.mesh.namespace(obj.namespace)
    outcome = f"the controller deletes (or never creates) Deployment modelmesh-serving-{obj.name}, no model loads"
    if view.labels is None and ns != CONTROLLER_NAMESPACE:
        yield finding(obj, "metadata.namespace", f"namespace {ns} is not defined in {ctx.mesh.source}: unless it has "
                      f"label modelmesh-enabled: \"true\" on the cluster, {outcome}; define it here with the label",
                      name, "warning")
    elif view.labels is not None:
        label = view.labels.get("modelmesh-enabled", "true" if ns == CONTROLLER_NAMESPACE else None)
        if label != "true":
            has = "lacks label modelmesh-enabled" if label is None else f"has modelmesh-enabled: {label!r}"
            yield finding(obj, "metadata.namespace", f"namespace {ns} {has}: {outcome}; label it modelmesh-enabled: "
                          "\"true\"", name)
    helper = spec.get("storageHelper")
    mounts = spec.get("builtInAdapter") is not None or not (isinstance(helper, dict) and helper.get("disabled") is True)
    secret = ctx.mesh.config().storage_secret
    if mounts and view.storage is None and not view.data_connections:
        yield finding(obj, "metadata.namespace", f"namespace {ns} has no {secret} Secret and no data connection in "
                      f"this repository: pods of runtime {obj.name} mount it and stay ContainerCreating (secret "
                      f"\"{secret}\" not found) unless it is made on the cluster; add one", name, "warning")


@rule("mm-storage-config-owner", "in RHOAI odh-model-controller owns a storage-config labelled "
      "opendatahub.io/managed and fills it only from data connections",
      source="OMC internal/controller/core/secret_controller.go reconcileSecret, newStorageSecret, "
             "deleteStorageSecret; cmd/main.go createManager (caches only Secrets labelled managed=true)",
      symptom="storage-config deleted or rewritten (keys vanish, Argo CD re-applies it): \"Did not find storage "
              "config for key K\"; or data connections never reach a repository-made storage-config",
      fix="keep a repository storage-config unlabelled and list every storage in it, or define storage only as "
          "data connections (annotated opendatahub.io/connection-type: s3, with the AWS_* keys)")
def storage_config_owner(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors OMC internal/controller/core/secret_controller.go reconcileSecret and newStorageSecret, as seen
    through the label-filtered Secret cache of cmd/main.go createManager."""
    if obj.kind != "Secret" or obj.group != "":
        return
    view = ctx.mesh.namespace(obj.namespace)
    if obj.name == OMC_STORAGE_SECRET:
        yield from _owned_storage(obj, view)
    elif all(obj.labels.get(k) == v for k, v in DATA_CONNECTION_LABELS.items()) and view.storage is None:
        yield from _data_connection(obj)  # OMC builds the namespace's storage-config from it


def _owned_storage(obj: K8sObject, view: NamespaceView) -> Iterator[Finding]:
    name, keys = "mm-storage-config-owner", set(storage_entries(obj))
    connections = {dc.name for dc in view.data_connections if dc.name != obj.name}
    if obj.labels.get(MANAGED) == "true":
        lost = ", ".join(sorted(keys - connections)) or "none"
        yield finding(obj, f"metadata.labels.{MANAGED}", f"labelled {MANAGED}: \"true\", storage-config belongs to "
                      f"odh-model-controller: it deletes it while namespace {obj.namespace} has no data connection, "
                      f"else rewrites it with one entry per data connection (keys lost: {lost}); remove the label or "
                      "make each storage a data connection", name)
    elif missing := sorted(connections - keys):
        # OMC's cache holds only Secrets labelled managed=true: it cannot see this one, its Create fails as
        # AlreadyExists, which it ignores, so it never writes the data connections in.
        yield finding(obj, "data", f"odh-model-controller never adds data connection(s) {', '.join(missing)} to a "
                      f"storage-config without label {MANAGED}: \"true\"; loads naming them fail \"Did not find "
                      "storage config for key\"; add them as entries here", name, "warning")


def _data_connection(obj: K8sObject) -> Iterator[Finding]:
    name, kind = "mm-storage-config-owner", obj.annotations.get(CONNECTION_TYPE)
    if kind is None:
        yield finding(obj, f"metadata.annotations.{CONNECTION_TYPE}", "odh-model-controller reads only this annotation "
                      f"(not connection-type-ref): storage-config entry {obj.name} gets type \"\" and loads through it "
                      "fail \"no provider registered for repositories of type ''\" unless their storageUri gives a "
                      "type; annotate it with s3", name, "warning")
    held = {str(k) for part in ("data", "stringData") for k in (dig(obj.body, part) or {})}
    if kind == "s3" and (missing := [k for k in OMC_AWS_KEYS if k not in held]):
        yield finding(obj, "data", f"data connection {obj.name} lacks {', '.join(missing)}: odh-model-controller "
                      f"writes empty strings for them into storage-config entry {obj.name}, and S3 loads through it "
                      "then have no bucket, endpoint, region or credentials; add the keys", name, "warning")


@rule("mm-storage-entry-shape", "the controller parses every storage-config entry as a JSON object of strings",
      source="MS controllers/servingruntime_controller.go getPVCs (json.Unmarshal into map[string]string), called "
             "by Reconcile for every ServingRuntime of the namespace",
      symptom="controller log \"Could not get pvcs: Could not parse storage configuration json\"; no runtime "
              "Deployment of the namespace is created or updated",
      fix="make every entry a JSON object whose values are strings (http headers as a string, booleans quoted)")
def entry_shape(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors MS controllers/servingruntime_controller.go getPVCs: Go's decoder lets JSON null (a null entry,
    null values) through; anything else that is not a string fails the reconcile of every runtime there."""
    if not (obj.kind == "Secret" and obj.group == "" and obj.name == ctx.mesh.config().storage_secret):
        return
    plain = dig(obj.body, "stringData") or {}
    for key, entry in sorted(storage_entries(obj).items()):
        odd = [f"{f} ({t})" for f, t in sorted(entry.fields.items()) if t not in ("string", "null")]
        shape = f"has non-string field(s) {', '.join(odd)}" if odd else "" if _is_object(entry) else entry.shape
        if shape:
            yield finding(obj, f"{'stringData' if key in plain else 'data'}.{key}", f"entry {key} {shape}: the "
                          f"controller fails the reconcile of every ServingRuntime in namespace {obj.namespace} "
                          "(\"Could not parse storage configuration json\") and changes none of their Deployments; "
                          "make it a JSON object of strings", "mm-storage-entry-shape")


@rule("mm-pvc-storage", "a claim is mounted into runtime pods only if storage-config lists it or allowAnyPVC is on",
      source="MS controllers/servingruntime_controller.go getPVCs; modelmesh/runtime.go addVolumesToDeployment; "
             "RA pullman/storageproviders/pvc/provider.go Pull",
      symptom="ISVC FailedToLoad: \"unable to access model local path '/pvc_mounts/<claim>/…'\" or \"the PVC mount "
              "base '/pvc_mounts' doesn't exist\"",
      fix="add {\"type\":\"pvc\",\"name\":\"<claim>\"} to storage-config, or set allowAnyPVC: true in "
          "model-serving-config (then the claim must exist)")
def pvc_storage(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors MS controllers/servingruntime_controller.go getPVCs and RA pvc/provider.go Pull: the claims of
    type-pvc storage-config entries are mounted, and with allowAnyPVC those the InferenceServices name. A claim
    taken from the entry itself (no name in the request) is always mounted."""
    load = _load(obj)
    if load is None or "name" not in load.params or ctx.mesh.config().allow_any_pvc:
        return
    entries, whole = _storage(ctx.mesh.namespace(obj.namespace))
    if _pulled(load, (entries or {}).get(_lookup(load)))[0] != "pvc":
        return
    claim, ns, name = load.params["name"], obj.namespace, "mm-pvc-storage"
    at = f"{load.prefix}.storageUri" if load.uri is not None else f"{load.prefix}.storage.parameters.name"
    entry = f"{{\"type\":\"pvc\",\"name\":\"{claim}\"}}"
    if entries is None or not whole:
        yield finding(obj, at, f"storage-config of namespace {ns} is not defined in {ctx.mesh.source} and allowAnyPVC "
                      f"is off: claim {claim} is mounted only if that storage-config has an entry {entry}", name,
                      "warning")
    elif not any(e.type == "pvc" and e.fields.get("name") == "string" for e in entries.values()):
        # With pvc entries present, their claim names are values the context does not hold: no verdict then.
        yield finding(obj, at, f"claim {claim} is not mounted into the runtime pods: storage-config in namespace {ns} "
                      "has no pvc entry and allowAnyPVC is off; the puller fails the load (\"unable to access model "
                      f"local path\"); add an entry {entry} or set allowAnyPVC: true in model-serving-config", name)
