"""An InferenceService as modelmesh-serving sees it: the Predictor it builds from one, and what it registers.

pkg/predictor_source/inferenceservice_registry.go (BuildBasePredictorFromInferenceService,
processInferenceServiceStorage) builds the Predictor; controllers/predictor_controller.go setVModel and
controllers/modelmesh/model_type_labels.go GetPredictorTypeLabel turn it into the ModelInfo it registers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mmgitops.modelmesh import ids

SECRET_KEY_ANNOTATION = "serving.kserve.io/secretKey"
SCHEMA_PATH_ANNOTATION = "serving.kserve.io/schemaPath"
RUNTIME_ANNOTATION = "serving.kserve.io/servingRuntime"
# getPredictorFramework's order: the old per-framework predictor fields, before `model`.
FRAMEWORKS = ("xgboost", "lightgbm", "sklearn", "tensorflow", "onnx", "pytorch", "triton", "pmml")
AZURE_BLOB_HOST_SUFFIX = "blob.core.windows.net"


@dataclass(frozen=True)
class Predictor:
    name: str
    model_format: str
    path: str
    model_version: str | None = None
    protocol: str | None = None
    runtime: str | None = None
    storage_key: str | None = None
    schema_path: str | None = None
    storage_params: dict[str, str] = field(default_factory=dict)

    def type_label(self) -> str:
        """GetPredictorTypeLabel: rt:<runtime> when one is named, else mt:<format>[:<version>][|pv:<protocol>]."""
        if self.runtime:
            return f"rt:{self.runtime}"
        label = ids.model_type(self.model_format)
        if self.model_version is not None:
            label += f":{self.model_version}"
        if self.protocol:
            label += f"|pv:{self.protocol}"
        return label

    def model_key(self) -> str:
        return ids.model_key_info(self.storage_key, self.storage_params, self.model_format, self.model_version,
                                      self.schema_path)

    def supported_by(self, runtime_labels: Iterable[str]) -> bool:
        """runtimeSupportsPredictor: the runtime has every label of the type (split on "|")."""
        have = set(runtime_labels)
        return all(label in have for label in self.type_label().split("|"))


def build(isvc: dict[str, Any]) -> Predictor:
    """The Predictor the controller builds from an InferenceService; ValueError (one line) where it gives up."""
    meta = isvc["metadata"]
    name = meta["name"]
    annotations = meta.get("annotations") or {}
    spec = (isvc.get("spec") or {}).get("predictor") or {}
    framework = next((f for f in FRAMEWORKS if spec.get(f) is not None), None)
    model = spec.get("model")
    if model is not None:
        if framework is not None:
            raise ValueError(f"the InferenceService {name} cannot have both the model spec and a framework spec "
                             f"({framework})")
        if RUNTIME_ANNOTATION in annotations:
            raise ValueError(f"the InferenceService {name} cannot have both the model spec and the runtime "
                             f"annotation {RUNTIME_ANNOTATION}")
        model_format = (model.get("modelFormat") or {})
        fmt, version, runtime = str(model_format.get("name", "")), model_format.get("version"), model.get("runtime")
        extension = model
    elif framework is not None:
        extension = spec[framework] or {}
        fmt, version, runtime = framework, None, annotations.get(RUNTIME_ANNOTATION)
    else:
        raise ValueError("no valid InferenceService predictor framework found")
    path, storage_key, schema_path, params = _storage(name, extension, annotations)
    protocol = extension.get("protocolVersion")
    return Predictor(name=name, model_format=fmt, path=path,
                     model_version=None if version is None else str(version),
                     protocol=str(protocol) if protocol else None, runtime=str(runtime) if runtime else None,
                     storage_key=storage_key, schema_path=schema_path, storage_params=params)


def _storage(name: str, extension: dict[str, Any], annotations: dict[str, str]
             ) -> tuple[str, str | None, str | None, dict[str, str]]:
    """processInferenceServiceStorage: (model path, storage key, schema path, storage parameters)."""
    uri = extension.get("storageUri")
    storage = extension.get("storage") or {}
    uri_params: dict[str, str] = {}
    if uri is None:
        if storage.get("path") is None:
            raise ValueError(f"the InferenceService {name} must have either the storageUri or the storage.path")
        path = str(storage["path"])
    else:
        if storage.get("path") is not None:
            raise ValueError(f"the InferenceService {name} cannot have both the storageUri and the storage.path")
        path, uri_params = _from_uri(name, str(uri))
    params = dict(storage["parameters"]) if storage.get("parameters") is not None else None
    if params is not None:
        params.update(uri_params)  # URI parameters take precedence
    key = storage.get("key")
    schema = storage.get("schemaPath")
    if key is None:
        key = annotations.get(SECRET_KEY_ANNOTATION)
    if schema is None:
        schema = annotations.get(SCHEMA_PATH_ANNOTATION)
    return (path, None if key is None else str(key), None if schema is None else str(schema),
            {str(k): str(v) for k, v in (uri_params if params is None else params).items()})


def _from_uri(name: str, uri: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(uri)
    path = parts.path.removeprefix("/")
    if parts.scheme == "pvc":
        return path, {"type": "pvc", "name": parts.netloc}
    if parts.scheme == "s3":
        return path, {"type": "s3", "bucket": parts.netloc}
    if parts.scheme == "gs":
        return path, {"type": "gcs", "bucket": parts.netloc}
    if parts.scheme in ("http", "https"):
        if parts.netloc.endswith(AZURE_BLOB_HOST_SUFFIX):
            container, _, rest = path.partition("/")
            return rest, {"type": "azure", "container": container, "account_name": parts.netloc.split(".")[0]}
        query = f"?{parts.query}" if parts.query else ""  # Go's URL.String() without the path keeps the query
        return path, {"type": "http", "url": f"{parts.scheme}://{parts.netloc}{query}"}
    raise ValueError(f"the InferenceService {name} has an unsupported storageUri scheme {parts.scheme}")
