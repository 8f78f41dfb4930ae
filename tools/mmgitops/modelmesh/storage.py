"""ModelMesh's `storage-config` format and model keys, and an S3 client for a storage it names.

The config is what ModelMesh mounts from its `storage-config` Secret: one key per storage, whose value
is a JSON object such as {"type": "s3", "access_key_id": ..., "secret_access_key": ..., "endpoint_url":
..., "bucket": ..., "region": ...}. A model's key (ModelInfo.key, passed on as LoadModelRequest.modelKey)
is JSON naming the storage, e.g. {"storage_key": "localMinIO", "bucket": "b", "disk_size_bytes": 1234}.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
from botocore import UNSIGNED

from mmgitops.errors import ToolError

SUPPORTED_TYPES = ("s3",)
DEFAULT_REGION = "us-east-1"
# A dead endpoint should fail a load in seconds, not after botocore's 60 s default.
CONNECT_TIMEOUT = 5


@dataclass(frozen=True)
class StorageEntry:
    key: str
    type: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    endpoint_url: str
    bucket: str = ""
    region: str = DEFAULT_REGION

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key,
                "endpoint_url": self.endpoint_url, "bucket": self.bucket, "region": self.region}


# --- storage-config -------------------------------------------------------------------------------------


def load_config(source: Path) -> dict[str, StorageEntry]:
    """Entries by storage key, from a JSON file (key -> object or JSON string) or a mounted Secret directory."""
    if source.is_dir():
        raw: dict[str, tuple[str, Any]] = {}
        for path in sorted(source.iterdir()):
            # A mounted Secret also holds `..data` and `..<timestamp>` entries: kubelet's atomic-update links.
            if path.name.startswith(".") or not path.is_file():
                continue
            raw[path.name] = (str(path), _read_text(path))
    elif source.is_file():
        document = _read_json(source, _read_text(source))
        if not isinstance(document, dict):
            raise ToolError(f"{source}: expected a JSON object of storage key -> storage, got {_kind(document)}")
        raw = {str(key): (str(source), value) for key, value in document.items()}
    else:
        raise ToolError(f"{source}: storage config not found")
    if not raw:
        raise ToolError(f"{source}: no storage entries")
    return {key: parse_entry(where, key, value) for key, (where, value) in raw.items()}


def write_config(path: Path, entries: Mapping[str, StorageEntry]) -> Path:
    """The JSON file format, readable by its owner only (it holds credentials)."""
    text = json.dumps({key: entry.to_json() for key, entry in entries.items()}, indent=2, sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed over it, so the file never exists with wider permissions.
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolError(f"{path}: cannot read: {exc.__class__.__name__}") from None


def _read_json(where: Path | str, text: str, key: str | None = None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only: the text may hold a secret.
        at = f"storage {key!r}: " if key else ""
        raise ToolError(f"{where}: {at}not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ToolError(f"{where}: {f'storage {key!r}: ' if key else ''}JSON nested too deeply to read") from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def parse_entry(where: str, key: str, value: Any) -> StorageEntry:
    """One storage: a JSON object, or its text as a storage-config Secret holds it; `where` names the source."""
    if isinstance(value, str):  # Secret data: the value is itself JSON text
        value = _read_json(where, value, key)
    if not isinstance(value, dict):
        raise ToolError(f"{where}: storage {key!r}: expected a JSON object, got {_kind(value)}")

    def text(name: str, required: bool, default: str = "") -> str:
        item = value.get(name)
        if item is None or item == "":
            if required:
                raise ToolError(f"{where}: storage {key!r}: field {name!r} is missing")
            return default
        if not isinstance(item, str):
            raise ToolError(f"{where}: storage {key!r}: field {name!r} must be a string, got {_kind(item)}")
        return item

    kind = text("type", required=True)
    if kind not in SUPPORTED_TYPES:
        raise ToolError(f"{where}: storage {key!r}: field 'type': {kind!r} is not supported (only s3)")
    endpoint = text("endpoint_url", required=True)
    if not endpoint.startswith(("http://", "https://")):
        raise ToolError(f"{where}: storage {key!r}: field 'endpoint_url' must start with http:// or https://")
    access, secret = text("access_key_id", False), text("secret_access_key", False)
    # Neither means anonymous access; one alone is a mistake.
    if bool(access) != bool(secret):
        raise ToolError(f"{where}: storage {key!r}: field "
                        f"{'secret_access_key' if access else 'access_key_id'!r} is missing")
    return StorageEntry(key=key, type=kind, access_key_id=access, secret_access_key=secret, endpoint_url=endpoint,
                        bucket=text("bucket", False) or text("default_bucket", False),
                        region=text("region", False, DEFAULT_REGION))


def s3_client(entry: StorageEntry, **config: Any) -> Any:
    """A boto3 S3 client for the entry: path-style addressing, as MinIO and moto on an IP need."""
    options: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT, "s3": {"addressing_style": "path"}, **config}
    credentials: dict[str, str] = {}
    if entry.access_key_id:
        credentials = {"aws_access_key_id": entry.access_key_id, "aws_secret_access_key": entry.secret_access_key}
    else:
        options["signature_version"] = UNSIGNED
    # A session per client: the default session is shared state and not thread-safe.
    return boto3.session.Session().client("s3", endpoint_url=entry.endpoint_url, region_name=entry.region,
                                          config=botocore.config.Config(**options), **credentials)


# --- model keys and the puller --------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelKey:
    storage_key: str | None = None
    bucket: str | None = None
    disk_size_bytes: int | None = None


def parse_model_key(text: str) -> ModelKey:
    """The fields of a ModelMesh model key that matter here; ValueError (one line) when it is malformed."""
    if not text.strip():
        return ModelKey()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"model key is not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"model key must be a JSON object, got {_kind(value)}")
    storage_key = value.get("storage_key")
    # modelmesh-serving puts the bucket in storage_params; older keys have it at the top level.
    params = value.get("storage_params") if isinstance(value.get("storage_params"), dict) else {}
    bucket = value.get("bucket") or params.get("bucket")
    size = value.get("disk_size_bytes")
    for name, item in (("storage_key", storage_key), ("bucket", bucket)):
        if item is not None and not (isinstance(item, str) and item):
            raise ValueError(f"model key field {name!r} must be a non-empty string")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError("model key field 'disk_size_bytes' must be a non-negative integer")
    return ModelKey(storage_key, bucket, size)


