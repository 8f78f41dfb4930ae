"""Build the reference pods' programs from the upstream source tarballs, once per commit.

ModelMesh (Java, Maven), rest-proxy and the MLServer adapter (Go). Each part is cached under
`<cache>/reference/<part>-<short commit>` and rebuilt only when missing; a build happens in a
`.partial` directory that is renamed into place, so a broken build never looks cached.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from mmgitops.errors import ToolError
from mmgitops.lab import prereqs
from mmgitops.lab.binaries import building, cache_root, record_build

PARTS = ("modelmesh-runtime-adapter", "rest-proxy", "modelmesh")  # longest first: names share prefixes
OTHERS = ("modelmesh-serving",)  # the other tarballs beside them: the controller's (lab/controller/build.py)
MAVEN_VERSION = "3.9.9"
MIN_MAVEN = (3, 9, 6)
ENV_SOURCES = "MMGITOPS_REFERENCE_SOURCES"


@dataclass(frozen=True)
class Source:
    part: str
    tarball: Path
    commit: str  # as the file name gives it (8 hex)


@dataclass
class Built:
    modelmesh_home: Path  # the image's install dir: start.sh, lib/
    rest_proxy: Path
    adapter: Path
    java_home: Path
    commits: dict[str, str]
    build_version: str
    built: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def repo_root() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return None


def default_source_dir() -> Path | None:
    """$MMGITOPS_REFERENCE_SOURCES, else a `shared/reference/upstream` next to the checkout (as CI lays it out)."""
    if os.environ.get(ENV_SOURCES):
        return Path(os.environ[ENV_SOURCES])
    candidates = [root.parent / "shared" / "reference" / "upstream" for root in (repo_root(), Path.cwd()) if root]
    return next((c for c in candidates if c.is_dir()), None)


def find_sources(source_dir: Path | None, parts: tuple[str, ...] = PARTS) -> dict[str, Source]:
    """The tarball of each of `parts` (the reference pods' by default; the controller asks for its own)."""
    directory = source_dir or default_source_dir()
    if directory is None or not directory.is_dir():
        raise ToolError(f"no reference sources at {directory or '../shared/reference/upstream'}: pass --source DIR "
                        f"or set {ENV_SOURCES}")
    found: dict[str, Source] = {}
    # Every known name, longest first, so that a modelmesh-serving-* tarball is never taken for ModelMesh's.
    names = sorted({*PARTS, *OTHERS, *parts}, key=len, reverse=True)
    for tarball in sorted(directory.glob("*.tar.gz")):
        for part in names:
            match = re.fullmatch(rf"{re.escape(part)}-(.+)-([0-9a-f]{{7,40}})\.tar\.gz", tarball.name)
            if match:
                if part in parts and part not in found:
                    found[part] = Source(part, tarball, match.group(2)[:8])
                break
    missing = [p for p in parts if p not in found]
    if missing:
        raise ToolError(f"{directory}: no tarball for {', '.join(missing)} (expected <repo>-<branch>-<commit>.tar.gz)")
    return found


def planned(sources: dict[str, Source]) -> dict[str, Path]:
    root = cache_root() / "reference"
    return {part: root / f"{part}-{src.commit}" for part, src in sources.items()}


def _runner(progress: Callable[[str], None]) -> Callable[..., None]:
    def run(args: list[str], cwd: Path, what: str, env: dict[str, str] | None = None) -> None:
        started = time.monotonic()
        proc = subprocess.Popen(args, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail[-40:], line.rstrip()]
            progress(f"{what}: {time.monotonic() - started:.0f} s")
        if proc.wait() != 0:
            telling = [t for t in tail if "[ERROR]" in t or "error" in t.lower()]
            detail = (telling[0] if telling else tail[-1] if tail else f"exit {proc.returncode}").strip()
            raise ToolError(f"building {what} failed: {detail[:300]}")
    return run


def _extract(src: Source, work: Path) -> Path:
    """The tarball unpacked under `work` (emptied first): the directory holding its sources."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    with tarfile.open(src.tarball) as tar:
        tar.extractall(work, filter="data")
    inner = [p for p in work.iterdir() if p.is_dir()]
    return inner[0] if len(inner) == 1 else work


def _publish(tmp: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def find_jdk() -> Path:
    jdk = prereqs.find_jdk()
    if jdk is None:
        raise ToolError(f"ModelMesh needs a JDK {prereqs.MIN_JDK}+ (none in JAVA_HOME or /usr/lib/jvm): install one")
    return jdk


def _maven_version(mvn: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([mvn, "-v"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    match = re.search(r"Apache Maven (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(g) for g in match.groups()) if match else ()


def find_maven(run: Callable[..., None]) -> str:
    """A Maven >= 3.9.6 (ModelMesh's protobuf plugin needs it): the PATH's, else one fetched by the PATH's."""
    cached = cache_root() / "reference" / f"maven-{MAVEN_VERSION}" / "bin" / "mvn"
    if cached.is_file():
        return str(cached)
    system = shutil.which("mvn")
    if not system:
        raise ToolError("building ModelMesh needs Maven (apt-get install maven): none on the PATH")
    if _maven_version(system) >= MIN_MAVEN:
        return system
    # The PATH's older Maven can still fetch a newer one from its configured repository.
    root = cache_root() / "reference"
    tmp = root / f"maven-{MAVEN_VERSION}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    run([system, "-B", "-q", "dependency:copy",
         f"-Dartifact=org.apache.maven:apache-maven:{MAVEN_VERSION}:tar.gz:bin", f"-DoutputDirectory={tmp}"],
        tmp, f"Maven {MAVEN_VERSION} (fetch)")
    archive = next(tmp.glob("apache-maven-*-bin.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    unpacked = tmp / f"apache-maven-{MAVEN_VERSION}"
    archive.unlink()
    _publish(unpacked, root / f"maven-{MAVEN_VERSION}")
    shutil.rmtree(tmp)
    return str(cached)


def build_modelmesh(src: Source, out: Path, jdk: Path, run: Callable[..., None]) -> None:
    mvn = find_maven(run)
    scratch = cache_root() / "reference" / "work" / out.name
    work = _extract(src, scratch)
    run([mvn, "-B", "-DskipTests", "package"], work, f"ModelMesh {src.commit}",
        {"JAVA_HOME": str(jdk), "MAVEN_OPTS": "-Dfile.encoding=UTF8"})
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(work / "target" / "dockerhome", tmp)
    _publish(tmp, out)
    shutil.rmtree(scratch)


def build_go(src: Source, out: Path, packages: list[str], run: Callable[..., None]) -> None:
    go = shutil.which("go")
    if not go:
        raise ToolError(f"building {src.part} needs the Go toolchain: none on the PATH")
    scratch = cache_root() / "reference" / "work" / out.name
    work = _extract(src, scratch)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", f"{tmp}/", *packages], work,
        f"{src.part} {src.commit}", {"CGO_ENABLED": "0"})
    _publish(tmp, out)
    shutil.rmtree(scratch)


def build(source_dir: Path | None, progress: Callable[[str], None]) -> Built:
    """The three parts, building what the cache lacks."""
    sources = find_sources(source_dir)
    out = planned(sources)
    run = _runner(progress)
    jdk = find_jdk()
    built: list[str] = []
    seconds: dict[str, float] = {}
    steps: list[tuple[str, Path, Callable[[], None]]] = [
        ("modelmesh", out["modelmesh"] / "start.sh",
         lambda: build_modelmesh(sources["modelmesh"], out["modelmesh"], jdk, run)),
        ("rest-proxy", out["rest-proxy"] / "proxy",
         lambda: build_go(sources["rest-proxy"], out["rest-proxy"], ["./proxy"], run)),
        ("modelmesh-runtime-adapter", out["modelmesh-runtime-adapter"] / "model-mesh-mlserver-adapter",
         lambda: build_go(sources["modelmesh-runtime-adapter"], out["modelmesh-runtime-adapter"],
                          ["./model-mesh-mlserver-adapter"], run)),
    ]
    with building(progress):
        for part, marker, step in steps:
            if marker.is_file():
                continue
            started = time.monotonic()
            step()
            seconds[part] = round(time.monotonic() - started, 1)
            record_build(part, seconds[part])
            built.append(f"{part} {sources[part].commit}")
    work = cache_root() / "reference" / "work"
    if work.is_dir() and not any(work.iterdir()):
        work.rmdir()
    commit = sources["modelmesh"].commit
    return Built(modelmesh_home=out["modelmesh"], rest_proxy=out["rest-proxy"] / "proxy",
                 adapter=out["modelmesh-runtime-adapter"] / "model-mesh-mlserver-adapter", java_home=jdk,
                 commits={p: s.commit for p, s in sources.items()},
                 # As the image's Dockerfile writes it: build date and the first 5 hex of the commit.
                 build_version=f"{date.fromtimestamp((out['modelmesh'] / 'start.sh').stat().st_mtime):%Y%m%d}-"
                 f"{commit[:5]}", built=built, seconds=seconds)
