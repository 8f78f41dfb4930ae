"""The package as a user gets it: a wheel built from this repository, installed in fresh virtual environments
outside the checkout.

The base install (no extras) must validate a profile and must not bring the lab's heavy packages; with
`[conformance,lab]` the installed suite must collect through its pytest11 plugin and `mmgitops conform` must
pass on the local mesh it starts. Every command runs with a working directory outside the checkout, so nothing
is found through the repository by accident. pip installs from the package index (its cache makes reruns fast).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.package

ROOT = Path(__file__).resolve().parents[2]
# What the wheel is built from: everything setuptools reads (pyproject.toml names README.md as the readme).
SOURCES = ("pyproject.toml", "README.md", "tools")
BUILD_LITTER = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
# The git-ignored S3 credentials stay where they are (the copy gets the example's placeholders).
PROFILE_LITTER = shutil.ignore_patterns("storage-config.env")
INSTALL_TIMEOUT = 1200
CONFORM_TIMEOUT = 1200


def clean_env(tmp: Path) -> dict[str, str]:
    """This test run's environment minus what would point a child at the checkout or at this pytest: the
    child's own venv and a cache directory of its own (a fresh user's) decide what it finds."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP") and not k.startswith("PYTEST_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # mmgitops caches (CRD schemas, compiled stubs) and lab state in tmp, not in the user's directories; pip
    # keeps its own cache, so the extras install fast the second time.
    env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR") or pip_cache_dir()
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    env["MMGITOPS_STATE"] = str(tmp / "state")
    return env


def pip_cache_dir() -> str:
    out = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else str(Path.home() / ".cache" / "pip")


def run(args: list[str | Path], cwd: Path, env: dict[str, str],
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def ok(out: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    if out.returncode != 0:
        pytest.fail(f"{what}: exit {out.returncode}\n--- stdout (tail)\n{out.stdout[-6000:]}\n"
                    f"--- stderr (tail)\n{out.stderr[-4000:]}", pytrace=False)
    return out


@dataclass
class Venv:
    root: Path
    home: Path  # the working directory of every command: outside the checkout
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def mmgitops(self) -> Path:
        return self.root / "bin" / "mmgitops"

    def run(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run(list(args), self.home, self.env, timeout)


@dataclass
class Wheel:
    path: Path
    build_log: str


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    # Built from a copy, so the build leaves no build/ or egg-info in the checkout; a symlink in the package
    # (the suite's ServingRuntime templates) is copied as the file it points to, as the wheel holds it.
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=BUILD_LITTER)
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    out = ok(run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, src], tmp, clean_env(tmp),
                 INSTALL_TIMEOUT), "python -m build --wheel")
    wheels = sorted(dist.glob("mmgitops-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {dist}, found {[w.name for w in wheels]}"
    return Wheel(wheels[0], out.stdout + out.stderr)


def make_venv(tmp: Path, requirement: str) -> Venv:
    home = tmp / "home"
    home.mkdir()
    env = clean_env(tmp)
    ok(run([sys.executable, "-m", "venv", tmp / "venv"], home, env), "python -m venv")
    venv = Venv(tmp / "venv", home, env)
    ok(venv.run(venv.python, "-m", "pip", "install", "--quiet", requirement, timeout=INSTALL_TIMEOUT),
       f"pip install {requirement}")
    return venv


@pytest.fixture(scope="module")
def base(wheel: Wheel, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return make_venv(tmp_path_factory.mktemp("base"), str(wheel.path))


@pytest.fixture(scope="module")
def full(wheel: Wheel, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return make_venv(tmp_path_factory.mktemp("full"), f"{wheel.path}[conformance,lab]")


def test_the_wheel_holds_the_package_data_and_the_entry_points(wheel: Wheel) -> None:
    with zipfile.ZipFile(wheel.path) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for data in ("mmgitops/data/pins.toml", "mmgitops/data/dependencies.yaml", "mmgitops/data/health-samples.yaml",
                 "mmgitops/modelmesh/proto/model-mesh.proto", "mmgitops/modelmesh/proto/model-runtime.proto"):
        assert data in names, f"{data} is not in {wheel.path.name}"
    # Whatever non-Python files the suite has (its ServingRuntime templates) come along.
    suite = ROOT / "tools" / "mmgitops" / "conformance"
    for path in suite.rglob("*"):
        if path.is_file() and path.suffix not in (".py", ".pyc"):
            name = path.relative_to(ROOT / "tools").as_posix()
            assert name in names, f"{name} is not in {wheel.path.name}"
    assert "[pytest11]" in entry_points and "mmgitops-conformance = mmgitops.conformance.plugin" in entry_points
    assert "mmgitops = mmgitops.cli.main:main" in entry_points
    assert "License-Expression: Apache-2.0" in metadata
    deprecations = [line for line in wheel.build_log.splitlines()
                    if "deprecat" in line.lower() and "licen" in line.lower()]
    assert not deprecations, "the build warns about the license:\n" + "\n".join(deprecations)


def test_the_base_install_validates_a_profile_outside_the_checkout(base: Venv) -> None:
    ok(base.run(base.mmgitops, "--help"), "mmgitops --help")
    # A profile as a user's own GitOps repository holds it: the overlays and the components they point into.
    for tree in ("overlays", "components"):
        shutil.copytree(ROOT / tree, base.home / tree, ignore=PROFILE_LITTER)
    # The storage Secret's placeholders, as `make setup` makes them from the example.
    for example in (base.home / "components").rglob("*.env.example"):
        shutil.copy2(example, example.with_suffix(""))
    out = ok(base.run(base.mmgitops, "validate", "overlays/conformance", timeout=600),
             "mmgitops validate overlays/conformance")
    assert "0 finding(s)" in out.stdout, out.stdout
    # The base install is the GitOps tools only: the lab's model server and S3 stand-in stay out.
    for module in ("mlserver", "moto"):
        imported = base.run(base.python, "-c", f"import {module}")
        assert imported.returncode != 0 and "ModuleNotFoundError" in imported.stderr, (
            f"`import {module}` works in the base install: {imported.stderr[-500:]}")


def test_a_base_install_leaves_other_pytest_runs_alone(base: Venv) -> None:
    # The pytest11 entry point is there with or without the extras: where a user's own pytest sits beside a
    # base install, the plugin is loaded too and must not break that run for want of [conformance].
    ok(base.run(base.python, "-m", "pip", "install", "--quiet", "pytest", timeout=INSTALL_TIMEOUT),
       "pip install pytest")
    own = base.home / "own-tests"
    own.mkdir()
    (own / "test_own.py").write_text("def test_own():\n    assert True\n", encoding="utf-8")
    out = ok(base.run(base.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", own),
             "pytest on a user's own tests beside a base install")
    assert "1 passed" in out.stdout, out.stdout[-2000:]


def test_the_extras_bring_the_suite_and_its_plugin(full: Venv) -> None:
    ok(full.run(full.mmgitops, "conform", "--help"), "mmgitops conform --help")
    # The plugin comes through the pytest11 entry point: no conftest, no -p.
    helped = ok(full.run(full.python, "-m", "pytest", "--help"), "pytest --help")
    assert "--conformance-report" in helped.stdout
    out = ok(full.run(full.python, "-m", "pytest", "--pyargs", "mmgitops.conformance.checks", "--collect-only", "-q",
                      "-p", "no:cacheprovider"), "pytest --pyargs mmgitops.conformance.checks --collect-only")
    counted = re.search(r"(\d+) tests? collected", out.stdout)
    assert counted, out.stdout[-2000:]
    assert int(counted.group(1)) > 20, out.stdout[-2000:]


def test_conform_passes_from_the_wheel(full: Venv) -> None:
    # The suite on the embedded local mesh it starts and stops itself (MLServer, etcd, the S3 stand-in); like
    # the mesh tier, it needs an `etcd` binary on the PATH, which .ci/run installs. One group: what the wheel must
    # prove is that the installed suite, its plugin, its fixtures and the local mesh run; every group runs on the
    # same embedded mesh in the conformance tier.
    report = full.home / "report"
    ok(full.run(full.mmgitops, "conform", "-m", "routing", "--report", report, timeout=CONFORM_TIMEOUT),
       "mmgitops conform")
    assert (report / "report.html").is_file()
    assert (report / "results.json").is_file()
