"""One conformance run on a cluster: its namespace, its storage Secret and its sample models in S3.

Everything is created under the run's label, in the namespace the run was given or one it made (namespaces.py),
and removed at the end: a namespace the run made with all it holds, else each object the run labelled; and the S3
objects under the run's prefix. Nothing unlabelled is touched.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from mmgitops import kubeconfig as kubeconfig_mod
from mmgitops.conformance import staging
from mmgitops.conformance.cluster import access, namespaces, objects
from mmgitops.conformance.target import SampleRef
from mmgitops.errors import ToolError
from mmgitops.modelmesh import storage


def api_client(kubeconfig: str | None, context: str | None = None) -> client.ApiClient:
    """A client for the kubeconfig (default: $KUBECONFIG or ~/.kube/config), checked to reach its server."""
    api = kubeconfig_mod.api_client(kubeconfig, context)
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
                 progress: Callable[[str], None] = lambda _: None, namespace: str | None = None) -> None:
        self.storage_key, self.entry = staging.choose(storage_config, storage_key)
        self.entries = storage.load_config(storage_config)
        self.api, self.run_id, self.progress = api, run_id, progress
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.place = namespaces.choose(api, namespace, run_id, runner(), self.storage_key)
        self.namespace = self.place.name
        self.samples: list[SampleRef] = []
        self.secret_made = False

    def open(self) -> None:
        self.progress(f"{'checking' if isinstance(self.place, namespaces.Given) else 'creating'} "
                      f"{self.place.kind} {self.namespace}")
        self.place.open()
        # Every call the checks make in the namespace, asked before anything is made there: a missing right is one
        # line now, not a check failing half-way.
        access.require(self.api, self.namespace, access.in_namespace(self.place.role), self.place.fix,
                       self.place.settle_s)
        secret = objects.storage_secret(self.namespace, self.run_id, runner(), self.storage_key,
                                        {k: e.to_json() for k, e in self.entries.items()})
        try:
            self.core.create_namespaced_secret(self.namespace, secret)
        except ApiException as error:
            raise self._secret_refused(error) from None
        self.secret_made = True
        self.samples = staging.stage(self.entry, self.storage_key, self.run_id, self.progress)

    def _secret_refused(self, error: ApiException) -> ToolError:
        where = f"secret {self.namespace}/{objects.STORAGE_SECRET}"
        if error.status == 403:
            return ToolError(f"{where}: this user may not create secrets in namespace {self.namespace}")
        if error.status != 409:
            return ToolError(f"cannot create {where}: {error.status} {error.reason}")
        try:
            labels = self.core.read_namespaced_secret(objects.STORAGE_SECRET, self.namespace).metadata.labels or {}
        except ApiException:
            labels = {}
        if objects.RUN_LABEL in labels:
            return ToolError(f"{where}: run {labels[objects.RUN_LABEL]} left it, or is still going: `mmgitops "
                             f"conform cleanup --namespace {self.namespace}` removes a killed run's objects")
        # ModelMesh reads one storage Secret per namespace by name: the run's would replace the user's.
        return ToolError(f"{where}: exists and is not the suite's; the run writes its own storage-config, so give "
                         "it a namespace without one")

    def close(self) -> list[str]:
        """Remove what open() made; returns a line per part it could not remove."""
        failures = []
        if isinstance(self.place, namespaces.Given):
            failures += remove_labelled(self.api, self.namespace, f"{objects.RUN_LABEL}={self.run_id}",
                                        secret=self.secret_made)
        failures += self.place.close()
        try:
            staging.remove(self.entry, self.run_id)
        except Exception as error:  # teardown reports what is left instead of stopping
            failures.append(f"s3://{self.entry.bucket}/{staging.sample_prefix(self.run_id)}: {error}")
        return failures


KINDS = (("serving.kserve.io", "v1beta1", "inferenceservices"), ("serving.kserve.io", "v1alpha1", "servingruntimes"))


def remove_labelled(api: client.ApiClient, namespace: str, selector: str, secret: bool = True) -> list[str]:
    """Delete the InferenceServices, then the ServingRuntimes the selector picks, then with `secret` the storage
    Secret, by name (the runner may not list Secrets: the caller knows it is the run's); a line per object that
    could not be deleted."""
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    failures = []
    for group, version, plural in KINDS:
        try:
            items = custom.list_namespaced_custom_object(group, version, namespace, plural,
                                                         label_selector=selector)["items"]
        except ApiException as error:
            failures.append(f"{plural} in namespace {namespace}: cannot list: {error.reason}")
            continue
        for item in items:
            name = item["metadata"]["name"]
            try:
                custom.delete_namespaced_custom_object(group, version, namespace, plural, name)
            except ApiException as error:
                if error.status != 404:
                    failures.append(f"{plural} {namespace}/{name}: {error.reason}")
    if secret:
        try:
            core.delete_namespaced_secret(objects.STORAGE_SECRET, namespace)
        except ApiException as error:
            if error.status != 404:
                failures.append(f"secret {namespace}/{objects.STORAGE_SECRET}: {error.reason}")
    return failures
