"""What killed runs left on a cluster, and the sample models they staged in S3, wherever their objects are:

- in a namespace the run was given (`--namespace NS`): the objects labelled by the suite there;
- in OpenShift projects the runs requested (`mmconf-<hex>`, holding a storage-config Secret the suite labelled);
- in labelled namespaces the runs made (plain Kubernetes, or a user who may not request projects).

A run's storage-config Secret (and a namespace it made) names the storage its samples went to and the run's owner,
and the Secret holds that storage's credentials, so cleanup can remove the samples without being given any; where
the runner may not read Secrets, `--storage-config FILE` gives them. A run still going on this host is left alone.
Unlabelled objects are never looked at.
"""

from __future__ import annotations

import base64
import binascii
import socket
from pathlib import Path

import botocore.exceptions
from kubernetes import client
from kubernetes.client.rest import ApiException

from mmgitops import procs
from mmgitops.conformance.cluster import access, namespaces, objects
from mmgitops.conformance.cluster.session import remove_labelled
from mmgitops.conformance.staging import remove as remove_samples
from mmgitops.conformance.staging import sample_prefix
from mmgitops.errors import ToolError
from mmgitops.modelmesh import storage

Lines = tuple[list[str], list[str]]  # (removed, kept), a line per part
CLEAN_GIVEN = "pass --namespace NS to clean up a namespace runs were given"


def cleanup(api: client.ApiClient, namespace: str | None = None, storage_config: Path | None = None) -> Lines:
    if namespace:
        return _given(api, namespace, storage_config)
    removed, kept = [], []
    seen: set[str] = set()  # projects handled: a labelled namespace that is also a run's project is not done twice
    projects = namespaces.serves_projects(api)
    if projects:
        removed, kept = _projects(api, storage_config, seen)
    # On OpenShift, runs of users who may not request projects make labelled namespaces too; a self-provisioner
    # may not list namespaces, and has none of those.
    if not projects or access.allowed(api, access.Access("list", "", "namespaces")):
        more_removed, more_kept = _labelled_namespaces(api, storage_config, seen)
        removed, kept = removed + more_removed, kept + more_kept
    return removed, kept


def _live(annotations: dict[str, str] | None) -> str | None:
    """The PID of the run that owns the object, when it is still going on this host."""
    host, _, pid = (annotations or {}).get(objects.RUNNER_ANNOTATION, "").rpartition(":")
    return pid if host == socket.gethostname() and pid.isdigit() and procs.alive(int(pid)) else None


def _secret(core: client.CoreV1Api, namespace: str) -> client.V1Secret | None:
    """The run's storage-config Secret in `namespace`, None when there is none of the suite's."""
    try:
        found = core.read_namespaced_secret(objects.STORAGE_SECRET, namespace)
    except ApiException as error:
        if error.status in (403, 404):
            return None
        raise ToolError(f"secret {namespace}/{objects.STORAGE_SECRET}: {error.status} {error.reason}") from None
    return found if objects.RUN_LABEL in (found.metadata.labels or {}) else None


def _given(api: client.ApiClient, namespace: str, storage_config: Path | None) -> Lines:
    core = client.CoreV1Api(api)
    secret = _secret(core, namespace)
    selector = objects.RUN_LABEL
    removed: list[str] = []
    if secret is not None:
        run_id = secret.metadata.labels[objects.RUN_LABEL]
        if pid := _live(secret.metadata.annotations):
            return [], [f"kept run {run_id} in namespace {namespace}: a running suite owns it (pid {pid})"]
        done, line = _remove_samples(core, namespace, run_id, secret.metadata.annotations, storage_config)
        removed += [line] if done and line else []
        kept = [line] if line and not done else []
        selector = f"{objects.RUN_LABEL}={run_id}"
    else:
        kept = []
    failures = remove_labelled(api, namespace, selector, secret=secret is not None)
    removed.append(f"removed the objects labelled {selector} in namespace {namespace}")
    return removed, kept + failures


def _projects(api: client.ApiClient, storage_config: Path | None, seen: set[str]) -> Lines:
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    removed, kept = [], []
    try:
        listed = custom.list_cluster_custom_object(*namespaces.PROJECTS, "projects")["items"]
    except ApiException as error:
        raise access.refused(error, "list", "projects.project.openshift.io", hint=CLEAN_GIVEN) from None
    for project in listed:
        name = project["metadata"]["name"]
        if not name.startswith(objects.NAMESPACE_PREFIX) or (project.get("status") or {}).get("phase") == "Terminating":
            continue
        secret = _secret(core, name)
        if secret is None:
            continue  # not a run's project, or one whose Secret this user may not read: left alone
        seen.add(name)
        if pid := _live(secret.metadata.annotations):
            kept.append(f"kept project {name}: a running suite owns it (pid {pid})")
            continue
        done, line = _remove_samples(core, name, secret.metadata.labels[objects.RUN_LABEL],
                                     secret.metadata.annotations, storage_config)
        if line:
            (removed if done else kept).append(line)
        custom.delete_cluster_custom_object(*namespaces.PROJECTS, "projects", name)
        removed.append(f"removed project {name}")
    return removed, kept


def _labelled_namespaces(api: client.ApiClient, storage_config: Path | None, seen: set[str]) -> Lines:
    core = client.CoreV1Api(api)
    removed, kept = [], []
    try:
        listed = core.list_namespace(label_selector=objects.RUN_LABEL).items
    except ApiException as error:
        raise access.refused(error, "list", "namespaces", hint=CLEAN_GIVEN) from None
    for ns in listed:
        if ns.metadata.name in seen or (ns.status and ns.status.phase == "Terminating"):
            continue
        if pid := _live(ns.metadata.annotations):
            kept.append(f"kept namespace {ns.metadata.name}: a running suite owns it (pid {pid})")
            continue
        done, line = _remove_samples(core, ns.metadata.name, (ns.metadata.labels or {}).get(objects.RUN_LABEL, ""),
                                     ns.metadata.annotations, storage_config)
        if line:
            (removed if done else kept).append(line)
        # The namespace goes even when its samples could not: the line above names what is left in S3.
        core.delete_namespace(ns.metadata.name, propagation_policy="Background")
        removed.append(f"removed namespace {ns.metadata.name}")
    return removed, kept


def _remove_samples(core: client.CoreV1Api, namespace: str, run_id: str, annotations: dict[str, str] | None,
                    storage_config: Path | None) -> tuple[bool, str | None]:
    """(whether the samples are gone, a line saying what happened or None when the run recorded none)."""
    key = (annotations or {}).get(objects.SAMPLES_ANNOTATION)
    if not key or not run_id:
        return True, None  # a run that recorded no storage: nothing of it is known to be in S3
    where = f"secret {namespace}/{objects.STORAGE_SECRET}"
    left = f"left the samples of run {run_id} (storage {key!r}, prefix {sample_prefix(run_id)})"
    try:
        entry = _storage(core, namespace, key, storage_config)
        count = remove_samples(entry, run_id)
    except ApiException as error:
        return False, f"{left}: cannot read {where}: {error.status} {error.reason}; pass --storage-config FILE"
    except (binascii.Error, UnicodeDecodeError):
        return False, f"{left}: {where}: key {key!r} is not base64 of UTF-8 text"
    except ToolError as error:
        return False, f"{left}: {error}"
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        return False, f"{left}: {str(error).splitlines()[0]}"
    return True, f"removed {count} sample objects from s3://{entry.bucket}/{sample_prefix(run_id)}"


def _storage(core: client.CoreV1Api, namespace: str, key: str, storage_config: Path | None) -> storage.StorageEntry:
    """The storage `key`, from --storage-config when given, else from the run's own Secret."""
    if storage_config is not None:
        entries = storage.load_config(storage_config)
        if key not in entries:
            raise ToolError(f"{storage_config}: no storage {key!r}")
        return entries[key]
    where = f"secret {namespace}/{objects.STORAGE_SECRET}"
    data = core.read_namespaced_secret(objects.STORAGE_SECRET, namespace).data or {}
    if key not in data:
        raise ToolError(f"{where} has no key {key!r}")
    return storage.parse_entry(where, key, base64.b64decode(data[key]).decode("utf-8"))
