"""Model storage for the local mesh: ModelMesh's `storage-config` format, an S3 puller, a moto S3 server.

The config is what ModelMesh mounts from its `storage-config` Secret: one key per storage, whose value
is a JSON object such as {"type": "s3", "access_key_id": ..., "secret_access_key": ..., "endpoint_url":
..., "bucket": ..., "region": ...}. A model's key (ModelInfo.key, passed on as LoadModelRequest.modelKey)
is JSON naming the storage, e.g. {"storage_key": "localMinIO", "bucket": "b", "disk_size_bytes": 1234}.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from threading import Lock
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
from botocore import UNSIGNED

from mmgitops.errors import ToolError
from mmgitops.mesh.modelserver import free_port, retry_port_clash

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


class PullError(ToolError):
    """A model could not be sized or pulled; the message is one line naming model, storage and path."""


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


class Puller:
    """Downloads models named by (model path, model key) from the S3 storages of a storage-config."""

    def __init__(self, config: Mapping[str, StorageEntry]) -> None:
        self.config = dict(config)
        self._clients: dict[str, Any] = {}
        self._lock = Lock()

    def pull(self, model_id: str, model_path: str, model_key_json: str, dest_root: Path) -> Path:
        """dest_root/model_id/<file> for a single object, else the directory dest_root/model_id."""
        if model_id in ("", ".", "..") or "/" in model_id or "\\" in model_id:
            raise PullError(f"model {model_id!r}: not usable as a directory name")
        entry, bucket, key = self._locate(model_id, model_path, model_key_json)
        where = f"model {model_id}: storage {entry.key!r}: s3://{bucket}/{model_path}"
        client = self._client(entry)
        dest = dest_root / model_id
        dest_root.mkdir(parents=True, exist_ok=True)
        # Into a scratch directory renamed at the end: a failed pull leaves nothing half-written behind.
        scratch = Path(tempfile.mkdtemp(prefix=f".{model_id}.", dir=dest_root))
        try:
            objects = self._objects(client, bucket, key, where)
            single = len(objects) == 1 and objects[0][0] == key
            for name, _size in objects:
                relative = PurePosixPath(PurePosixPath(name).name) if single \
                    else PurePosixPath(name).relative_to(key.rstrip("/"))
                target = scratch / relative
                if ".." in relative.parts or not target.resolve().is_relative_to(scratch.resolve()):
                    raise PullError(f"{where}: object {name!r} would be written outside the model directory")
                target.parent.mkdir(parents=True, exist_ok=True)
                with _s3_errors(where):
                    client.download_file(bucket, name, str(target))
            shutil.rmtree(dest, ignore_errors=True)
            scratch.rename(dest)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return dest / PurePosixPath(key).name if single else dest

    def size(self, model_path: str, model_key_json: str, model_id: str = "") -> int | None:
        """Bytes on disk: the key's disk_size_bytes, else what S3 reports, else None (nothing there)."""
        try:
            parsed = parse_model_key(model_key_json)
        except ValueError as exc:
            raise PullError(f"model {model_id}: path {model_path}: {exc}") from None
        if parsed.disk_size_bytes is not None:
            return parsed.disk_size_bytes
        entry, bucket, key = self._locate(model_id, model_path, model_key_json)
        where = f"model {model_id}: storage {entry.key!r}: s3://{bucket}/{model_path}"
        try:
            return sum(size for _name, size in self._objects(self._client(entry), bucket, key, where))
        except _Missing:
            return None

    def _locate(self, model_id: str, model_path: str, model_key_json: str) -> tuple[StorageEntry, str, str]:
        try:
            parsed = parse_model_key(model_key_json)
        except ValueError as exc:
            raise PullError(f"model {model_id}: path {model_path}: {exc}") from None
        if parsed.storage_key is None:
            raise PullError(f"model {model_id}: path {model_path}: model key has no storage_key")
        entry = self.config.get(parsed.storage_key)
        if entry is None:
            known = ", ".join(sorted(self.config)) or "none"
            raise PullError(f"model {model_id}: storage {parsed.storage_key!r}: path {model_path}: "
                            f"no such storage in the storage config (known: {known})")
        bucket = parsed.bucket or entry.bucket
        if not bucket:
            raise PullError(f"model {model_id}: storage {entry.key!r}: path {model_path}: "
                            "no bucket in the model key or the storage")
        key = model_path.lstrip("/")
        if not key:
            raise PullError(f"model {model_id}: storage {entry.key!r}: s3://{bucket}/: the model path is empty")
        return entry, bucket, key

    def _client(self, entry: StorageEntry) -> Any:
        with self._lock:
            if entry.key not in self._clients:
                self._clients[entry.key] = s3_client(entry)
            return self._clients[entry.key]

    def _objects(self, client: Any, bucket: str, key: str, where: str) -> list[tuple[str, int]]:
        """(name, size) of the single object `key`, else of every object under the prefix `key/`."""
        with _s3_errors(where):
            if not key.endswith("/"):
                try:
                    head = client.head_object(Bucket=bucket, Key=key)
                    return [(key, int(head["ContentLength"]))]
                except botocore.exceptions.ClientError as exc:
                    if _code(exc) not in ("404", "NoSuchKey", "NotFound"):
                        raise
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/")
            # Keys ending in "/" are folder markers some consoles create, not files.
            found = [(item["Key"], int(item["Size"])) for page in pages for item in page.get("Contents", [])
                     if not item["Key"].endswith("/")]
        if not found:
            raise _Missing(f"{where}: no such object or prefix")
        return found


@contextmanager
def _s3_errors(where: str) -> Iterator[None]:
    """S3 and connection errors as one-line PullErrors that name the model, storage and path."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        if _code(exc) == "NoSuchBucket":
            raise _Missing(f"{where}: no such bucket") from None
        raise PullError(f"{where}: {_reason(exc)}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise PullError(f"{where}: {_reason(exc)}") from None


class _Missing(PullError):
    """Nothing at the path: size() answers None, pull() fails."""


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _reason(exc: Exception) -> str:
    return " ".join(f"{exc.__class__.__name__}: {exc}".split())


# --- a real S3 API on loopback --------------------------------------------------------------------------


@dataclass
class S3Server:
    """moto's S3 server on 127.0.0.1 with generated credentials (moto accepts any), stopped by PID."""

    endpoint: str
    process: subprocess.Popen[bytes]
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    log: Path
    region: str = DEFAULT_REGION

    @property
    def pid(self) -> int:
        return self.process.pid

    def entry(self, key: str = "localS3", bucket: str = "") -> StorageEntry:
        return StorageEntry(key=key, type="s3", access_key_id=self.access_key_id,
                            secret_access_key=self.secret_access_key, endpoint_url=self.endpoint, bucket=bucket,
                            region=self.region)

    @classmethod
    def start(cls, log: Path, timeout: float = 30.0) -> S3Server:
        log.parent.mkdir(parents=True, exist_ok=True)
        return retry_port_clash(lambda: cls._start_once(log, timeout), log)

    @classmethod
    def _start_once(cls, log: Path, timeout: float) -> S3Server:
        port = free_port()
        with log.open("ab") as out:
            process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        server = cls(f"http://127.0.0.1:{port}", process, secrets.token_hex(10), secrets.token_hex(20), log)
        # One attempt per probe: the loop is the retry, and botocore's backoff would only slow it down.
        client = s3_client(server.entry(), connect_timeout=1, read_timeout=5, retries={"total_max_attempts": 1})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ToolError(f"moto S3 server exited with {process.returncode} at startup (log: {log})")
            try:
                client.list_buckets()
                return server
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                time.sleep(0.1)
        server.stop()
        raise ToolError(f"moto S3 server not answering after {timeout:.0f} s (log: {log})")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                self.process.wait()
