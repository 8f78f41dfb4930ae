"""One conformance run on a cluster: its namespace, its storage Secret and its sample models in S3.

Everything is created under the run's label in a namespace of the run's own, and removed at the end:
the namespace (with all it holds) and the S3 objects under the run's prefix. Nothing unlabelled is touched.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.exceptions
import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from mmgitops.conformance.cluster import objects
from mmgitops.conformance.target import SampleRef
from mmgitops.errors import ToolError
from mmgitops.mesh import samples, storage

SAMPLES = 6
S3_PREFIX = "mmgitops-conformance"


def api_client(kubeconfig: str | None, context: str | None = None) -> client.ApiClient:
    """A client for the kubeconfig (default: $KUBECONFIG or ~/.kube/config), checked to reach its server."""
    try:
        api = config.new_client_from_config(config_file=kubeconfig, context=context)
    except (config.ConfigException, OSError, TypeError) as error:
        raise ToolError(f"kubeconfig {kubeconfig or '~/.kube/config'}: {str(error).splitlines()[0]}") from None
    api.configuration.retries = 1  # an unreachable server should fail in seconds, not after urllib3's three tries
    try:
        client.VersionApi(api).get_code(_request_timeout=10)
    except (urllib3.exceptions.HTTPError, ApiException, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise ToolError(f"cannot reach the cluster at {api.configuration.host}: {str(reason).splitlines()[0]}"
                        ) from None
    return api


def runner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Session:
    def __init__(self, api: client.ApiClient, run_id: str, storage_config: Path, storage_key: str,
                 progress: Callable[[str], None] = lambda _: None) -> None:
        entries = storage.load_config(storage_config)
        if storage_key not in entries:
            raise ToolError(f"{storage_config}: no storage named {storage_key!r}; storages found: "
                            f"{', '.join(sorted(entries))}")
        self.api, self.run_id, self.progress = api, run_id, progress
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.namespace = objects.namespace_name(run_id)
        self.entries, self.storage_key = entries, storage_key
        self.entry = entries[storage_key]
        if not self.entry.bucket:
            raise ToolError(f"{storage_config}: storage {storage_key!r} names no bucket to stage the samples in")
        self.samples: list[SampleRef] = []

    def open(self) -> None:
        self.progress(f"creating namespace {self.namespace}")
        _create(lambda: self.core.create_namespace(objects.namespace(self.run_id, runner(), self.storage_key)),
                f"namespace {self.namespace}")
        _create(lambda: self.core.create_namespaced_secret(
            self.namespace, objects.storage_secret(self.run_id, {k: e.to_json() for k, e in self.entries.items()})),
            f"secret {self.namespace}/{objects.STORAGE_SECRET}")
        self.progress(f"staging {SAMPLES} sample models in s3://{self.entry.bucket}/{sample_prefix(self.run_id)}")
        with tempfile.TemporaryDirectory(prefix="mmconf-samples-") as work:
            try:
                staged = samples.upload(samples.train(Path(work), SAMPLES), self.entry, self.entry.bucket,
                                        sample_prefix(self.run_id))
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
                raise ToolError(f"cannot stage the sample models in s3://{self.entry.bucket} at "
                                f"{self.entry.endpoint_url}: {str(error).splitlines()[0]}") from None
        self.samples = [SampleRef(s.name, s.expected, str(s.s3_path), s.model_key(self.storage_key))
                        for s in staged]

    def close(self) -> list[str]:
        """Remove what open() made; returns a line per part it could not remove."""
        failures = []
        try:
            self.core.delete_namespace(self.namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                failures.append(f"namespace {self.namespace}: {error.reason}")
        try:
            remove_samples(self.entry, self.run_id)
        except Exception as error:  # teardown reports what is left instead of stopping
            failures.append(f"s3://{self.entry.bucket}/{sample_prefix(self.run_id)}: {error}")
        return failures


def sample_prefix(run_id: str) -> str:
    return f"{S3_PREFIX}/{run_id}/"


def remove_samples(entry: storage.StorageEntry, run_id: str) -> int:
    """Delete the sample models a run staged; returns how many objects went."""
    s3 = storage.s3_client(entry)
    removed = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=entry.bucket, Prefix=sample_prefix(run_id)):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=entry.bucket, Key=item["Key"])
            removed += 1
    return removed


def _create(make: Callable[[], Any], what: str) -> None:
    try:
        make()
    except ApiException as error:
        raise ToolError(f"cannot create {what}: {error.status} {error.reason}") from None
