"""What killed runs left on a cluster: their labelled namespaces, and the sample models they staged in S3.

A run's namespace names the storage its samples went to (an annotation) and holds that storage's credentials
(the run's storage-config Secret), so cleanup can remove the samples without being given credentials.
Unlabelled namespaces are never looked at.
"""

from __future__ import annotations

import base64
import binascii
import socket

import botocore.exceptions
from kubernetes import client
from kubernetes.client.rest import ApiException

from mmgitops import procs
from mmgitops.conformance.cluster import objects
from mmgitops.conformance.staging import remove as remove_samples
from mmgitops.conformance.staging import sample_prefix
from mmgitops.errors import ToolError
from mmgitops.modelmesh import storage


def leftovers(api: client.ApiClient) -> tuple[list[client.V1Namespace], list[str]]:
    """Namespaces earlier runs left (labelled by the suite), and lines about those a live run still owns."""
    found, busy = [], []
    for ns in client.CoreV1Api(api).list_namespace(label_selector=objects.RUN_LABEL).items:
        if ns.status and ns.status.phase == "Terminating":
            continue
        host, _, pid = ((ns.metadata.annotations or {}).get(objects.RUNNER_ANNOTATION, "")).rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and procs.alive(int(pid)):
            busy.append(f"kept namespace {ns.metadata.name}: a running suite owns it (pid {pid})")
        else:
            found.append(ns)
    return found, busy


def cleanup(api: client.ApiClient) -> tuple[list[str], list[str]]:
    """Remove each leftover run's samples, then its namespace: (removed, kept), a line per part."""
    core = client.CoreV1Api(api)
    found, kept = leftovers(api)
    removed = []
    for ns in found:
        done, line = _remove_samples_of(core, ns)
        if line:
            (removed if done else kept).append(line)
        # The namespace goes even when its samples could not: the line above names what is left in S3.
        core.delete_namespace(ns.metadata.name, propagation_policy="Background")
        removed.append(f"removed namespace {ns.metadata.name}")
    return removed, kept


def _remove_samples_of(core: client.CoreV1Api, ns: client.V1Namespace) -> tuple[bool, str | None]:
    """(whether the samples are gone, a line saying what happened or None when the run recorded none)."""
    name, run_id = ns.metadata.name, (ns.metadata.labels or {}).get(objects.RUN_LABEL, "")
    key = (ns.metadata.annotations or {}).get(objects.SAMPLES_ANNOTATION)
    if not key or not run_id:
        return True, None  # a run that recorded no storage: nothing of it is known to be in S3
    where = f"secret {name}/{objects.STORAGE_SECRET}"
    left = f"left the samples of namespace {name} (storage {key!r}, prefix {sample_prefix(run_id)})"
    try:
        data = core.read_namespaced_secret(objects.STORAGE_SECRET, name).data or {}
        if key not in data:
            return False, f"{left}: {where} has no key {key!r}"
        entry = storage.parse_entry(where, key, base64.b64decode(data[key]).decode("utf-8"))
        count = remove_samples(entry, run_id)
    except ApiException as error:
        return False, f"{left}: cannot read {where}: {error.status} {error.reason}"
    except (binascii.Error, UnicodeDecodeError):
        return False, f"{left}: {where}: key {key!r} is not base64 of UTF-8 text"
    except ToolError as error:
        return False, f"{left}: {error}"
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        return False, f"{left}: {str(error).splitlines()[0]}"
    return True, f"removed {count} sample objects from s3://{entry.bucket}/{sample_prefix(run_id)}"
