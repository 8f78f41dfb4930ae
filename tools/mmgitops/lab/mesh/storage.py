"""The local mesh's model storage: an S3 puller for ModelMesh's storage-config, and a moto S3 server on
loopback."""

from __future__ import annotations

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

import botocore.config
import botocore.exceptions

from mmgitops.errors import ToolError
from mmgitops.lab.ports import free_port, retry_port_clash
from mmgitops.lab.spawn import spawn
from mmgitops.modelmesh.storage import (
    DEFAULT_REGION,
    StorageEntry,
    load_config,
    parse_model_key,
    s3_client,
)


class PullError(ToolError):
    """A model could not be sized or pulled; the message is one line naming model, storage and path."""


class Puller:
    """Downloads models named by (model path, model key) from the S3 storages of a storage-config.

    Given a path (a JSON file or a mounted Secret's directory), it reads the storage config again at each pull, as
    the adapter's puller reads the mounted Secret at each load (model-serving-puller/puller/config.go
    `GetStorageConfiguration`): a replaced Secret takes effect on the next load, without a restart."""

    def __init__(self, config: Mapping[str, StorageEntry] | Path) -> None:
        self._path = config if isinstance(config, Path) else None
        self._fixed = {} if isinstance(config, Path) else dict(config)
        self._clients: dict[StorageEntry, Any] = {}
        self._lock = Lock()

    @property
    def config(self) -> dict[str, StorageEntry]:
        if self._path is None:
            return self._fixed
        try:
            return load_config(self._path)
        except ToolError as exc:  # the adapter fails the load: "Storage secretKey not found", or a bad JSON
            raise PullError(str(exc)) from None

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
        with self._lock:  # by the whole entry: a replaced Secret with another endpoint gets a client of its own
            if entry not in self._clients:
                self._clients[entry] = s3_client(entry)
            return self._clients[entry]

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
        process = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port], log)
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
