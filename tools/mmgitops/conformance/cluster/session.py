"""One conformance run on a cluster: its namespace, its storage Secret and its sample models in S3.

Everything is created under the run's label in a namespace of the run's own, and removed at the end:
the namespace (with all it holds) and the S3 objects under the run's prefix. Nothing unlabelled is touched.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from mmgitops.conformance import staging
from mmgitops.conformance.cluster import objects
from mmgitops.conformance.target import SampleRef
from mmgitops.errors import ToolError
from mmgitops.modelmesh import storage


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
        self.storage_key, self.entry = staging.choose(storage_config, storage_key)
        self.entries = storage.load_config(storage_config)
        self.api, self.run_id, self.progress = api, run_id, progress
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.namespace = objects.namespace_name(run_id)
        self.samples: list[SampleRef] = []

    def open(self) -> None:
        self.progress(f"creating namespace {self.namespace}")
        _create(lambda: self.core.create_namespace(objects.namespace(self.run_id, runner(), self.storage_key)),
                f"namespace {self.namespace}")
        _create(lambda: self.core.create_namespaced_secret(
            self.namespace, objects.storage_secret(self.run_id, {k: e.to_json() for k, e in self.entries.items()})),
            f"secret {self.namespace}/{objects.STORAGE_SECRET}")
        self.samples = staging.stage(self.entry, self.storage_key, self.run_id, self.progress)

    def close(self) -> list[str]:
        """Remove what open() made; returns a line per part it could not remove."""
        failures = []
        try:
            self.core.delete_namespace(self.namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                failures.append(f"namespace {self.namespace}: {error.reason}")
        try:
            staging.remove(self.entry, self.run_id)
        except Exception as error:  # teardown reports what is left instead of stopping
            failures.append(f"s3://{self.entry.bucket}/{staging.sample_prefix(self.run_id)}: {error}")
        return failures


def _create(make: Callable[[], Any], what: str) -> None:
    try:
        make()
    except ApiException as error:
        raise ToolError(f"cannot create {what}: {error.status} {error.reason}") from None
