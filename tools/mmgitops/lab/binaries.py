"""Build kube-apiserver, kube-controller-manager, kube-scheduler, etcd and kwok from pinned Go modules.

Binaries are cached under the user's cache directory, keyed by version, and rebuilt only when
missing. No registry ships kube-apiserver, so it is built through a wrapper module that requires
k8s.io/kubernetes and points each staging module at its matching v0.x release.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from mmgitops.errors import ToolError
from mmgitops.gitops import pins

# The k8s.io modules that live in the kubernetes repository's staging/ directory (1.31).
STAGING = (
    "api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go",
    "cloud-provider", "cluster-bootstrap", "code-generator", "component-base", "component-helpers",
    "controller-manager", "cri-api", "cri-client", "csi-translation-lib", "dynamic-resource-allocation",
    "endpointslice", "kms", "kube-aggregator", "kube-controller-manager", "kube-proxy", "kube-scheduler",
    "kubectl", "kubelet", "metrics", "mount-utils", "pod-security-admission", "sample-apiserver",
    "sample-cli-plugin", "sample-controller",
)
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")

ETCD_MAIN = """// Command etcd runs the etcd server of the pinned go.etcd.io/etcd/server/v3 module.
package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    etcd: Path
    kwok: Path
    kwokctl: Path

    def all(self) -> list[Path]:
        return [self.kube_apiserver, self.kube_controller_manager, self.kube_scheduler,
                self.etcd, self.kwok, self.kwokctl]


def cache_root() -> Path:
    root = Path(os.environ.get("MMGITOPS_CACHE") or platformdirs.user_cache_dir("mmgitops"))
    if root.exists() and not root.is_dir():
        raise ToolError(f"cache directory {root}: not a directory (set MMGITOPS_CACHE to one)")
    return root


def versions() -> dict[str, str]:
    return dict(pins.load()["control_plane"])


def planned() -> Binaries:
    v = versions()
    bin_dir = cache_root() / "bin"
    k8s = bin_dir / f"kubernetes-{v['kubernetes']}"
    return Binaries(k8s / "kube-apiserver", k8s / "kube-controller-manager", k8s / "kube-scheduler",
                    bin_dir / f"etcd-{v['etcd']}" / "etcd",
                    bin_dir / f"kwok-{v['kwok']}" / "kwok", bin_dir / f"kwok-{v['kwok']}" / "kwokctl")


def missing() -> list[Path]:
    return [p for p in planned().all() if not p.is_file()]


def go() -> str:
    go = shutil.which("go")
    if not go:
        raise ToolError("the Go toolchain is needed to build the local cluster's binaries: install Go")
    return go


def go_env() -> dict[str, str]:
    # The module proxy is the only source here, and the checksum database does not know every
    # k8s.io staging release; the wrapper's go.sum records what was built.
    return {**os.environ, "GOFLAGS": "-mod=mod", "GOSUMDB": "off", "CGO_ENABLED": "0"}


# Seconds each build (and each whole demo: cli/demo.py) last took here, by name without version: the usual duration.
BUILD_TIMES = "build-times.json"


def last_build_s(name: str) -> float | None:
    try:
        return float(json.loads((cache_root() / BUILD_TIMES).read_text(encoding="utf-8"))[name])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_build(name: str, seconds: float) -> None:
    path = cache_root() / BUILD_TIMES
    try:
        times = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        times = {}
    times = {**(times if isinstance(times, dict) else {}), name: round(seconds)}
    write(path, json.dumps(times, indent=1))


@contextmanager
def ticking(progress: Callable[[str], None], what: str) -> Iterator[None]:
    """`what: N s` every second: `go build` prints nothing while it compiles, for minutes, and a log off a terminal
    shows only the lines progress is given."""
    started = time.monotonic()
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1):
            progress(f"{what}: {time.monotonic() - started:.0f} s")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_go(args: list[str], cwd: Path, what: str, progress: Callable[[str], None],
           extra_env: dict[str, str] | None = None, name: str = "") -> None:
    """Build with Go, saying what is built, from which module, and how long it took the last time here. `name`: the
    build's key in BUILD_TIMES (default: the first word of `what`)."""
    env = {**go_env(), **(extra_env or {})}
    name = name or what.split()[0]
    last = last_build_s(name)
    usual = f"last time here {last:.0f} s" if last is not None else "first build here: minutes"
    progress(f"{what}: not cached; `go {args[1]}` ({usual})")
    started = time.monotonic()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    downloads = 0
    assert proc.stdout is not None
    with ticking(lambda text: progress(f"{text} ({downloads} modules fetched; {usual})"), what):
        for line in proc.stdout:
            tail = [*tail[-20:], line.rstrip()]
            if line.startswith("go: downloading"):
                downloads += 1
    if proc.wait() != 0:
        detail = next((t for t in tail if "403" in t or "error" in t.lower()), tail[-1] if tail else "")
        raise ToolError(f"building {what} failed: {detail.strip()}")
    record_build(name, time.monotonic() - started)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def build_kubernetes(version: str, out: Path, progress: Callable[[str], None]) -> None:
    minor = version.lstrip("v").split(".")[1]
    staging = version.replace("v1.", "v0.", 1)
    work = cache_root() / "build" / f"kubernetes-{version}"
    replaces = "\n".join(f"\tk8s.io/{m} => k8s.io/{m} {staging}" for m in STAGING)
    write(work / "go.mod", f"module mmgitops.local/kubernetes\n\ngo 1.22.0\n\nrequire k8s.io/kubernetes {version}\n\n"
           f"replace (\n{replaces}\n)\n")
    ldflags = " ".join([
        "-s -w",
        f"-X k8s.io/component-base/version.gitVersion={version}",
        "-X k8s.io/component-base/version.gitMajor=1",
        f"-X k8s.io/component-base/version.gitMinor={minor}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
    ])
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    run_go([go(), "build", "-trimpath", "-ldflags", ldflags, "-o", f"{tmp}/",
          *(f"k8s.io/kubernetes/cmd/{c}" for c in CONTROL_PLANE)], work, f"kubernetes {version}", progress)
    publish(tmp, out)


def build_etcd(version: str, out: Path, progress: Callable[[str], None]) -> None:
    work = cache_root() / "build" / f"etcd-{version}"
    write(work / "go.mod", f"module mmgitops.local/etcd\n\ngo 1.22\n\nrequire go.etcd.io/etcd/server/v3 {version}\n")
    write(work / "main.go", ETCD_MAIN)
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    run_go([go(), "build", "-trimpath", "-ldflags", "-s -w", "-o", f"{tmp}/etcd", "."], work,
         f"etcd {version}", progress)
    publish(tmp, out)


def build_kwok(version: str, out: Path, progress: Callable[[str], None]) -> None:
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    run_go([go(), "install", f"sigs.k8s.io/kwok/cmd/kwok@{version}", f"sigs.k8s.io/kwok/cmd/kwokctl@{version}"],
         Path.home(), f"kwok {version}", progress, {"GOBIN": str(tmp)})
    publish(tmp, out)


@contextmanager
def building(progress: Callable[[str], None]) -> Iterator[None]:
    """Held while a process checks the cache and builds what it lacks: two runs sharing the cache (`make test`'s two
    lanes, or a demo beside a test run) build each binary once, the second finding it cached after the wait."""
    lock = cache_root() / ".build.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another mmgitops process is building into {cache_root()}: waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # the lock goes with the file's closing


def publish(tmp: Path, out: Path) -> None:
    """Move a finished build into place in one step, so a broken build never looks cached."""
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def ensure(progress: Callable[[str], None]) -> tuple[Binaries, list[str]]:
    """The binaries, building what is missing; and the names of what was built now."""
    v = versions()
    want = planned()
    built = []
    with building(progress):
        if not all(p.is_file() for p in (want.kube_apiserver, want.kube_controller_manager, want.kube_scheduler)):
            build_kubernetes(v["kubernetes"], want.kube_apiserver.parent, progress)
            built.append(f"kubernetes {v['kubernetes']}")
        if not want.etcd.is_file():
            build_etcd(v["etcd"], want.etcd.parent, progress)
            built.append(f"etcd {v['etcd']}")
        if not (want.kwok.is_file() and want.kwokctl.is_file()):
            build_kwok(v["kwok"], want.kwok.parent, progress)
            built.append(f"kwok {v['kwok']}")
    return want, built


def cache_size() -> int:
    root = cache_root() / "bin"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0
