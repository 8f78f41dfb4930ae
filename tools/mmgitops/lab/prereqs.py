"""What this machine needs before the lab builds or starts anything, checked in one place and named all at once.

Used by `local cluster up`, `local argocd up`, `local build`, `demo`, and, before the virtual environment exists,
by `make test`, `make demo` and `.ci/run` (`python3 -m mmgitops.lab.prereqs USE [--install]`, standard library
only), so that the README, the Makefile and CI cannot drift. `--install` installs the missing Debian packages with
apt-get, saying so; what no Debian package gives (Go, root, disk space) is named with how to get it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mmgitops.errors import ToolError

MIN_JDK = 21  # ModelMesh's build (the reference pods)
COLD_DISK_GB = 15  # Go's module and build caches, Maven's, and the lab's binaries, built from nothing
WARM_DISK_GB = 2


@dataclass(frozen=True)
class Need:
    name: str  # what is missing, as the line names it
    why: str
    present: Callable[[], bool]
    debian: str = ""  # the Debian package that gives it; "" when none does
    how: str = ""  # how to get it otherwise


def _commands(*names: str) -> Callable[[], bool]:
    return lambda: all(shutil.which(name) for name in names)


def go_needed() -> str:
    text = resources.files("mmgitops").joinpath("data/pins.toml").read_text(encoding="utf-8")
    return str(tomllib.loads(text)["toolchain"]["go"])


def _version(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+(?:\.\d+)+)", text)
    return tuple(int(n) for n in match.group(1).split(".")) if match else ()


def go_ok() -> bool:
    go = shutil.which("go")
    if not go:
        return False
    done = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60)
    return _version(done.stdout) >= _version(go_needed())


def jdk_version(home: Path) -> int:
    release = home / "release"
    if not (home / "bin" / "javac").is_file() or not release.is_file():
        return 0
    match = re.search(r'JAVA_VERSION="(\d+)', release.read_text(encoding="utf-8", errors="replace"))
    return int(match.group(1)) if match else 0


def find_jdk() -> Path | None:
    """The newest JDK of MIN_JDK or later in JAVA_HOME or /usr/lib/jvm; None when there is none."""
    candidates = [Path(os.environ["JAVA_HOME"])] if os.environ.get("JAVA_HOME") else []
    jvm = Path("/usr/lib/jvm")
    candidates += sorted(p for p in jvm.iterdir() if p.is_dir() and not p.is_symlink()) if jvm.is_dir() else []
    best = max(candidates, key=jdk_version, default=None)
    return best if best is not None and jdk_version(best) >= MIN_JDK else None


def cache_dir() -> Path:
    """The lab's cache (binaries.cache_root), found without platformdirs: this runs before the venv exists."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("MMGITOPS_CACHE") or Path(base) / "mmgitops")


def disk_needed_gb() -> int:
    return WARM_DISK_GB if (cache_dir() / "bin").is_dir() else COLD_DISK_GB


def disk_ok() -> bool:
    where = cache_dir()
    while not where.exists():
        where = where.parent
    return shutil.disk_usage(where).free >= disk_needed_gb() * 2**30


NEEDS = {
    "etcd": Need("etcd", "the local mesh's registry", _commands("etcd"), debian="etcd-server"),
    "git": Need("git", "the local Argo CD's git server", _commands("git"), debian="git"),
    "redis": Need("redis-server", "the local Argo CD's cache", _commands("redis-server"), debian="redis-server"),
    "maven": Need("mvn", "building the reference ModelMesh", _commands("mvn"), debian="maven"),
    "iproute2": Need("ip", "the pod network namespace", _commands("ip"), debian="iproute2"),
    "util-linux": Need("unshare and nsenter", "the pod network namespace", _commands("unshare", "nsenter"),
                       debian="util-linux"),
    # Debian 12 packages OpenJDK 17 only: a newer JDK comes from elsewhere (this machine kind has Temurin's).
    "jdk": Need(f"a JDK {MIN_JDK}+", "building and running the reference ModelMesh", lambda: find_jdk() is not None,
                how=f"install a JDK {MIN_JDK}+ (Temurin, say) under /usr/lib/jvm or point JAVA_HOME at one"),
    "go": Need("Go", "building the local cluster, Argo CD, the controller and the reference pods' Go parts",
               go_ok, how="install Go from https://go.dev/dl/ (or set GOTOOLCHAIN=auto with an older one)"),
    "root": Need("root", "the pod network namespace of the local cluster", lambda: os.geteuid() == 0,
                 how="run it as root (mesh mode, `local mesh up`, does not need it)"),
    "disk": Need("free disk", "the build caches", disk_ok, how="free space where the caches live"),
}
USES = {
    "mesh": ("etcd",),
    "reference": ("etcd", "maven", "jdk", "go", "iproute2", "util-linux", "disk"),
    "build": ("go", "disk"),
    "cluster": ("etcd", "go", "iproute2", "util-linux", "root", "disk"),
    "argocd": ("git", "redis", "go", "iproute2", "util-linux", "root", "disk"),
}
USES["demo"] = tuple(dict.fromkeys(USES["cluster"] + USES["argocd"]))
# Not root: without it the tiers that need a network namespace skip, each saying so.
USES["test"] = tuple(key for key in NEEDS if key != "root")


def missing(use: str) -> list[Need]:
    return [NEEDS[key] for key in USES[use] if not NEEDS[key].present()]


def describe(need: Need) -> str:
    name = need.name
    if need.name == "Go":
        name = f"Go {go_needed()}+"
    elif need.name == "free disk":
        name = f"{disk_needed_gb()} GB free in {cache_dir()}'s file system"
    fix = f"Debian package {need.debian}" if need.debian else need.how
    return f"{name} ({need.why}; {fix})"


def check(what: str, *uses: str) -> None:
    """ToolError naming everything `what` lacks here for all of `uses`, in one line."""
    lacking = list({id(n): n for use in uses for n in missing(use)}.values())
    if lacking:
        packages = " ".join(n.debian for n in lacking if n.debian)
        hint = f"; `apt-get install {packages}` installs the packages" if packages else ""
        raise ToolError(f"{what} needs what this machine lacks: {'; '.join(describe(n) for n in lacking)}{hint}")


def install(packages: Sequence[str], say: Callable[[str], None]) -> None:
    say(f"installing the Debian packages {' '.join(packages)} (apt-get)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
        done = subprocess.run([*sudo, *args], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise ToolError(f"{' '.join(args[:2])} failed (exit {done.returncode}): {last}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m mmgitops.lab.prereqs",
                                     description="Check what this machine needs for USE, naming everything missing.")
    parser.add_argument("use", choices=sorted(USES), metavar="USE", help=f"one of {', '.join(sorted(USES))}")
    parser.add_argument("--install", action="store_true", help="install the missing Debian packages with apt-get")
    args = parser.parse_args(argv)
    try:
        if args.install:
            packages = [n.debian for n in missing(args.use) if n.debian]
            if packages:
                install(packages, lambda text: print(f"prereqs: {text}", file=sys.stderr))
        check(f"`{args.use}`", args.use)
    except ToolError as error:
        print(f"prereqs: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
