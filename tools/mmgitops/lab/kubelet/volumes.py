"""A pod's volumes as host directories kept current as the kubelet keeps them (pkg/volume/configmap, secret,
projected, downwardapi, emptydir), and each container's volumeMounts as host paths (kubelet_pods.go makeMounts).

Volume NAME lives in ROOT/NAME. configMap, secret, downwardAPI and projected volumes hold exactly their payload:
laid out as the kubelet's AtomicWriter lays them out (a `..data` link swapped to a new version when the objects
change, see _sync). emptyDir is a directory kept as it is for the pod's life.

Where this differs from the kubelet:
- A subPath mount of a configMap or secret volume sees updates here; the kubelet bind-mounts it once.
- A file with no `mode`/`defaultMode` is 0644, or 0600 when it holds Secret data or a token (the API server
  defaults `defaultMode` to 0644 on every pod it stores, so its pods say otherwise); and a volume holding
  either is a 0700 directory, because here it is a directory on a shared host, not a tmpfs only the pod sees.
- A volume type with no host-directory form here (persistentVolumeClaim, hostPath, csi, ...) raises
  Unsupported, naming the volume and its type; `containers=` leaves out the containers that mount it (and the
  volumes only they mount), for pods whose other containers can run without it.
- projected serviceAccountToken sources (every pod's kube-api-access-* volume) need `token=`, a callable that
  returns a token for (audience, expirationSeconds), e.g. from a TokenRequest for the pod's ServiceAccount.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mmgitops.lab.kubelet import (
    KubeletError,
    Lookup,
    MissingReference,
    Obj,
    config_map_data,
    context,
    podenv,
    secret_data,
)

TokenSource = Callable[[str, int], str]  # (audience, expirationSeconds) -> token
SUPPORTED = ("configMap", "secret", "downwardAPI", "projected", "emptyDir")
PLAIN_MODE, PRIVATE_MODE = 0o644, 0o600
DATA_DIR = "..data"  # the link to the current version (AtomicWriter's dataDirName)
TOKEN_SECONDS = 3600  # serviceAccountToken's expirationSeconds when the pod leaves it out (API default)


class Unsupported(KubeletError):
    """A volume, or a projected source, that has no host-directory form here."""


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int
    private: bool  # Secret data or a token: its volume's directory is owner-only


Payload = dict[str, File]  # path in the volume -> file


@dataclass(frozen=True)
class _Inputs:
    """What a volume's payload may draw on besides its own source."""

    pod: Obj
    objects: Lookup
    token: TokenSource | None
    allocatable: Mapping[str, Any]


def materialise(pod: Obj, objects: Lookup, root: Path, *, containers: Collection[str] | None = None,
                token: TokenSource | None = None,
                allocatable: Mapping[str, Any] = podenv.DEFAULT_ALLOCATABLE) -> dict[str, dict[str, Path]]:
    """Write (or bring up to date) the pod's volumes under root and return, per container (init containers
    too), {mountPath: host path}. With `containers`, only those and the volumes they mount. Raises
    MissingReference for a required ConfigMap, Secret or key that does not exist, Unsupported for a volume
    type with no host form here, KubeletError for what the kubelet would refuse."""
    spec = pod.get("spec") or {}
    chosen = [c for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
              if containers is None or c.get("name") in containers]
    mounted = {m.get("name") for c in chosen for m in c.get("volumeMounts") or []}
    inputs = _Inputs(pod, objects, token, allocatable)
    root.mkdir(parents=True, exist_ok=True)
    directories: dict[str, Path] = {}
    for volume in spec.get("volumes") or []:
        name = str(volume.get("name", ""))
        with context(pod, f"volume {name}"):
            directories[name] = root / _relative(name, "volume name")
            if containers is None or name in mounted:
                _materialise_volume(volume, directories[name], inputs)
    return {str(c.get("name")): _mounts(c, directories, inputs) for c in chosen}


def _materialise_volume(volume: Obj, directory: Path, inputs: _Inputs) -> None:
    sources = [key for key in volume if key != "name"]
    kind = sources[0] if sources else "emptyDir"  # the API defaults a volume without a source to emptyDir
    if len(sources) > 1:
        raise KubeletError(f"more than one volume source: {', '.join(sorted(sources))}")
    if kind == "emptyDir":
        directory.mkdir(exist_ok=True)  # sizeLimit and medium: Memory are not enforced here
        return
    source = volume[kind] or {}
    if kind == "configMap":
        payload = _config_map(source, source.get("defaultMode"), inputs)
    elif kind == "secret":
        payload = _secret(source, str(source.get("secretName", "")), source.get("defaultMode"), inputs)
    elif kind == "downwardAPI":
        payload = _downward(source, source.get("defaultMode"), inputs)
    elif kind == "projected":
        payload = _projected(source, inputs)
    else:
        raise Unsupported(f"{kind} volumes are not materialised here (only {', '.join(SUPPORTED)}); "
                          f"name the containers that can run without it (containers=)")
    _sync(directory, payload)


def _config_map(source: Obj, default_mode: int | None, inputs: _Inputs) -> Payload:
    name = str(source.get("name", ""))
    obj = inputs.objects.config_map(name)
    if obj is None and not source.get("optional"):
        raise MissingReference(f"ConfigMap {name} not found")
    data = config_map_data(obj) if obj is not None else {}  # a missing optional one is an empty volume
    return _keys(data, source, default_mode, PLAIN_MODE, f"ConfigMap {name}")


def _secret(source: Obj, name: str, default_mode: int | None, inputs: _Inputs) -> Payload:
    obj = inputs.objects.secret(name)
    if obj is None and not source.get("optional"):
        raise MissingReference(f"Secret {name} not found")
    data = secret_data(obj) if obj is not None else {}
    return _keys(data, source, default_mode, PRIVATE_MODE, f"Secret {name}")


def _keys(data: Mapping[str, bytes], source: Obj, default_mode: int | None, fallback: int, what: str) -> Payload:
    """Every key as a file of its name, or `items` key -> path (configmap.go MakePayload): an item whose key
    is missing fails unless the source is optional, and is then left out."""
    private, mode = fallback == PRIVATE_MODE, _mode(default_mode, fallback)
    items = source.get("items") or []
    if not items:
        return {key: File(value, mode, private) for key, value in data.items()}
    payload = {}
    for item in items:
        key = str(item.get("key", ""))
        if key not in data:
            if source.get("optional"):
                continue
            raise MissingReference(f"key {key} not found in {what}")
        payload[str(item.get("path", key))] = File(data[key], _mode(item.get("mode"), mode), private)
    return payload


def _downward(source: Obj, default_mode: int | None, inputs: _Inputs) -> Payload:
    """Each item's fieldRef or resourceFieldRef value (a volume's resourceFieldRef must name its container)."""
    mode, payload = _mode(default_mode, PLAIN_MODE), {}
    for item in source.get("items") or []:
        path = str(item.get("path", ""))
        if "fieldRef" in item:
            value = podenv.field_value(inputs.pod, str(item["fieldRef"].get("fieldPath", "")))
        elif (item.get("resourceFieldRef") or {}).get("containerName"):
            value = podenv.resource_value(inputs.pod, "", item["resourceFieldRef"], inputs.allocatable)
        else:
            raise KubeletError(f"downwardAPI item {path} needs a fieldRef or a resourceFieldRef with containerName")
        payload[path] = File(value.encode(), _mode(item.get("mode"), mode), False)
    return payload


def _projected(source: Obj, inputs: _Inputs) -> Payload:
    """All sources' files in one directory, a later source's file winning a shared path (projected.go)."""
    default_mode, payload = source.get("defaultMode"), {}
    for entry in source.get("sources") or []:
        kind = next(iter(entry), "")
        part = entry[kind] or {}
        if kind == "configMap":
            payload.update(_config_map(part, default_mode, inputs))
        elif kind == "secret":
            payload.update(_secret(part, str(part.get("name", "")), default_mode, inputs))
        elif kind == "downwardAPI":
            payload.update(_downward(part, default_mode, inputs))
        elif kind == "serviceAccountToken":
            payload[str(part.get("path", ""))] = _token(part, default_mode, inputs.token)
        else:
            raise Unsupported(f"projected {kind} sources are not materialised here "
                              f"(only configMap, secret, downwardAPI, serviceAccountToken)")
    return payload


def _token(source: Obj, default_mode: int | None, token: TokenSource | None) -> File:
    if token is None:
        raise Unsupported("projected serviceAccountToken needs a token source (materialise(..., token=...))")
    audience, seconds = str(source.get("audience") or ""), int(source.get("expirationSeconds") or TOKEN_SECONDS)
    return File(token(audience, seconds).encode(), _mode(default_mode, PRIVATE_MODE), True)


def _mode(mode: Any, fallback: int) -> int:
    return fallback if mode is None else int(mode)


def _sync(directory: Path, payload: Payload) -> None:
    """Make directory hold exactly payload, as the kubelet's AtomicWriter does (pkg/volume/util/atomic_writer.go):
    the files live in a timestamped `..<time>` directory, `..data` links to it and each top-level entry links into
    `..data`. A new version is written beside the old one and `..data` renamed over at once, so a reader sees one
    version of every key, and a watcher of the directory (ModelMesh's ConfigMapKeyFileWatcher) sees `..data`
    created. An unchanged payload touches nothing."""
    directory.mkdir(exist_ok=True)
    directory.chmod(0o700 if any(f.private for f in payload.values()) else 0o755)
    wanted = {_relative(path, "item path"): file for path, file in payload.items()}
    data = directory / DATA_DIR
    current = data.resolve() if data.is_symlink() else None
    if current is not None and _holds(current, wanted):
        return
    version = Path(tempfile.mkdtemp(prefix=f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.", dir=directory))
    version.chmod(0o755)
    for path, file in wanted.items():
        _write(version / path, file)
    link = directory / f"{DATA_DIR}_tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(version.name)
    os.replace(link, data)
    tops = {path.parts[0] for path in wanted}
    for top in tops:
        entry = directory / top
        if not entry.is_symlink():
            if entry.is_dir():
                shutil.rmtree(entry)  # a plain file or directory an earlier writer left
            else:
                entry.unlink(missing_ok=True)
            entry.symlink_to(Path(DATA_DIR) / top)
    for entry in directory.iterdir():
        if entry.name.startswith(".."):
            if entry.is_dir() and not entry.is_symlink() and entry != version:
                shutil.rmtree(entry)  # an older version, or one a killed run left half-written
        elif entry.name not in tops:
            entry.unlink() if entry.is_symlink() or entry.is_file() else shutil.rmtree(entry)


def _holds(version: Path, wanted: Mapping[PurePosixPath, File]) -> bool:
    """Does this version directory hold exactly these files, bytes and modes?"""
    have = {PurePosixPath(Path(parent, name).relative_to(version).as_posix())
            for parent, _dirs, names in os.walk(version) for name in names}
    if have != set(wanted):
        return False
    for path, file in wanted.items():
        target = version / path
        if target.read_bytes() != file.data or stat.S_IMODE(target.stat().st_mode) != file.mode:
            return False
    return True


def _write(target: Path, file: File) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL with 0600 first: Secret bytes are never readable by others, even for a moment.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(file.data)
        os.fchmod(out.fileno(), file.mode)


def _mounts(container: Obj, directories: Mapping[str, Path], inputs: _Inputs) -> dict[str, Path]:
    """{mountPath: host path}, subPath (or subPathExpr expanded with the container's env) below the volume's
    directory; a missing subPath is created as a directory, as makeMounts does."""
    name, out = str(container.get("name", "")), {}
    for mount in container.get("volumeMounts") or []:
        with context(inputs.pod, f"container {name}: volumeMount {mount.get('mountPath', '')}"):
            volume = str(mount.get("name", ""))
            if volume not in directories:
                raise KubeletError(f"cannot find volume {volume} to mount into container {name}")
            host = directories[volume]
            sub = _sub_path(mount, name, inputs)
            if sub:
                host = host / _relative(sub, "subPath")
                if not host.exists():
                    host.mkdir(parents=True)
            out[str(mount.get("mountPath", ""))] = host
    return out


def _sub_path(mount: Obj, container: str, inputs: _Inputs) -> str:
    """subPath, or subPathExpr with $(VAR) from the container's env: an unset or empty VAR is an error
    (kubecontainer.ExpandContainerVolumeMounts)."""
    expression = str(mount.get("subPathExpr") or "")
    if not expression:
        return str(mount.get("subPath") or "")
    env = podenv.resolve(inputs.pod, container, inputs.objects, allocatable=inputs.allocatable)
    missing: set[str] = set()

    def value(name: str) -> str:
        if not env.get(name):
            missing.add(name)
        return env.get(name, "")

    expanded = podenv.expand(expression, value)
    if missing:
        raise KubeletError(f"subPathExpr {expression!r}: missing value for {', '.join(sorted(missing))}")
    return expanded


def _relative(path: str, what: str) -> PurePosixPath:
    """A path that stays inside its directory: relative, no '..' part, not starting with '..' (the atomic
    writer's validatePath), so no item or subPath writes outside the pod's root."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or str(pure).startswith(".."):
        raise KubeletError(f"{what} {path!r} must be a relative path without '..'")
    return pure
