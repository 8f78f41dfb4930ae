"""Build the real modelmesh-serving controller from the pinned RHOAI source, once per commit, with RHOAI's defaults.

The tarball is the one pins.toml `[controller]` names, found where the reference pods' tarballs are
(`$MMGITOPS_REFERENCE_SOURCES`, else ../shared/reference/upstream). The build lives in
`<cache>/controller-<short commit>/`: the unpacked tree in `src/`, the binary `manager` beside it, and `build.json`.
The controller reads its config-defaults from the directory its source file was compiled in (pkg/config/config.go,
`runtime.Caller`) and its runtime Deployment template relative to its working directory
(config/internal/base/deployment.yaml.tmpl), so the tree is built where it stays, without -trimpath, and is the
directory the controller runs in. `build.json` is written last: a directory without it is wiped and built again.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from mmgitops.errors import ToolError
from mmgitops.gitops import pins
from mmgitops.lab import binaries
from mmgitops.lab.reference.build import Source, _extract, _runner, find_sources

PART = "modelmesh-serving"
MARKER = "build.json"
BUILD_NAME = "controller"  # its key in binaries.BUILD_TIMES
DEFAULTS = "config/default/config-defaults.yaml"
# What RHOAI installs as the ConfigMap model-serving-config-defaults (config/overlays/odh/default/kustomization.yaml),
# its $(name) vars filled from the mesh-parameters ConfigMap, i.e. params.env.
ODH_DEFAULTS = "config/overlays/odh/default/config-defaults.yaml"
ODH_PARAMS = "config/overlays/odh/params.env"


@dataclass(frozen=True)
class Built:
    binary: Path
    tree: Path          # the source tree: the controller's working directory
    commit: str
    built: bool = False  # built by this call, not found cached
    seconds: float = 0.0


def pin() -> dict[str, str]:
    return dict(pins.load()["controller"])


def planned() -> Built:
    """Where the pinned commit's build is (or will be), without building it."""
    commit = pin()["commit"]
    root = binaries.cache_root() / f"controller-{commit[:8]}"
    return Built(binary=root / "manager", tree=root / "src", commit=commit)


def source(source_dir: Path | None = None) -> Source:
    """The pinned tarball: one line naming the file and the pin when it is missing or of another commit."""
    want = pin()
    named = f"pins.toml [controller] wants {want['tarball']} (commit {want['commit']})"
    try:
        found = find_sources(source_dir, (PART,))[PART]
    except ToolError as error:
        raise ToolError(f"{error}; {named}") from None
    if not want["commit"].startswith(found.commit):
        raise ToolError(f"{found.tarball}: commit {found.commit} in its name is not the pinned one; {named}")
    return found


def rhoai_defaults(template: str, params: str) -> str:
    """ODH's config-defaults with each `$(name)` replaced by its params.env value, as kustomize's vars do."""
    values = {}
    for line in params.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            values[key.strip()] = value.strip()

    def value(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise ToolError(f"{ODH_DEFAULTS}: $({match.group(1)}) has no value in {ODH_PARAMS}")
        return values[match.group(1)]

    return re.sub(r"\$\(([^)\s]+)\)", value, template)


def _version(text: str) -> tuple[int, ...]:
    match = re.match(r"(?:go)?(\d+(?:\.\d+)*)", text.strip())
    return tuple(int(n) for n in match.group(1).split(".")) if match else ()


def check_go(tree: Path) -> str:
    """The Go version that will build `tree` (run there, so GOTOOLCHAIN applies), refused if older than go.mod's."""
    line = re.search(r"^go (\S+)\s*$", (tree / "go.mod").read_text(encoding="utf-8"), re.M)
    needed = line.group(1) if line else "0"
    proc = subprocess.run([binaries.go(), "env", "GOVERSION"], cwd=tree, capture_output=True, text=True)
    have = proc.stdout.strip() or proc.stderr.strip() or "unknown"
    if _version(have) < _version(needed):
        raise ToolError(f"the controller's go.mod needs Go >= {needed}; `go` on the PATH is {have}: install a newer "
                        "Go (or allow a toolchain download with GOTOOLCHAIN=auto)")
    return have


def finished(want: Built) -> bool:
    marker = want.binary.parent / MARKER
    try:
        return want.binary.is_file() and json.loads(marker.read_text(encoding="utf-8"))["commit"] == want.commit
    except (OSError, ValueError, KeyError, TypeError):
        return False


def unpack(src: Source, want: Built) -> None:
    """The tarball as `want.tree`, in the build's final directory (emptied first)."""
    root = want.binary.parent
    if root.exists():
        shutil.rmtree(root)
    work = root / "unpack"
    _extract(src, work).rename(want.tree)
    if work.exists():
        shutil.rmtree(work)


def build(want: Built, progress: Callable[[str], None]) -> float:
    """`go build` in the unpacked tree; the seconds it took."""
    tree = want.tree
    go_version = check_go(tree)
    # RHOAI's defaults where runtime.Caller sends the controller; the ConfigMap mount it tries first does not exist
    # outside a pod.
    (tree / DEFAULTS).write_text(rhoai_defaults((tree / ODH_DEFAULTS).read_text(encoding="utf-8"),
                                                (tree / ODH_PARAMS).read_text(encoding="utf-8")), encoding="utf-8")
    what = f"controller {want.commit[:8]}"
    started = time.monotonic()
    with binaries.ticking(progress, what):
        # No -trimpath: runtime.Caller must give the tree's real path. CGO_ENABLED=0 as the image's Dockerfile builds
        # it (a static binary, Go's own DNS resolver); -buildvcs=false because the tree is no git checkout.
        _runner(progress)([binaries.go(), "build", "-o", str(want.binary), "."], tree, what,
                          {"GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0"})
    seconds = round(time.monotonic() - started, 1)
    marker = want.binary.parent / MARKER
    partial = marker.with_suffix(".partial")
    partial.write_text(json.dumps({"commit": want.commit, "go": go_version, "seconds": seconds}, indent=2) + "\n",
                       encoding="utf-8")
    partial.rename(marker)  # last, in one step: only now does the directory count as built
    binaries.record_build(BUILD_NAME, seconds)
    return seconds


def ensure(progress: Callable[[str], None], source_dir: Path | None = None) -> Built:
    """The pinned controller, built unless a finished build of its commit is cached."""
    want = planned()
    if finished(want):
        return want
    with binaries.building(progress):
        if finished(want):
            return want
        src = source(source_dir)
        progress(f"controller {want.commit[:8]}: unpacking {src.tarball.name}")
        unpack(src, want)
        return replace(want, built=True, seconds=build(want, progress))
