"""Building the real modelmesh-serving controller, without Go: RHOAI's defaults, the pinned tarball's lookup, and
the cache's marker (a small fake tarball, the cache in tmp_path, the Go runner replaced)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from mmgitops.errors import ToolError
from mmgitops.lab.controller import build
from mmgitops.lab.reference import build as reference_build

pytestmark = pytest.mark.unit

PINNED = "modelmesh-serving-rhoai-2.25-1b731c3d"
ODH_DEFAULTS = "modelMeshImage:\n  name: $(odh-modelmesh)\nrestProxy:\n  image:\n    name: $(odh-mm-rest-proxy)\n"
PARAMS = ("# images\nodh-modelmesh=quay.io/opendatahub/modelmesh:v1\n"
          "odh-mm-rest-proxy = quay.io/opendatahub/rest-proxy:v1\n")


def tarball(directory: Path, name: str = PINNED, files: dict[str, str] | None = None) -> Path:
    """A tarball laid out like the upstream one: one top directory holding the tree."""
    files = files if files is not None else {
        "go.mod": "module github.com/kserve/modelmesh-serving\n\ngo 1.25.7\n", "main.go": "package main\n",
        build.DEFAULTS: "modelMeshImage:\n  name: kserve/modelmesh\n", build.ODH_DEFAULTS: ODH_DEFAULTS,
        build.ODH_PARAMS: PARAMS}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MMGITOPS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def go_runs(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Each `go build` the controller's build asks for; it writes the binary instead of compiling."""
    runs: list[dict] = []

    def runner(progress):
        def run(args: list[str], cwd: Path, what: str, env: dict[str, str] | None = None) -> None:
            runs.append({"args": args, "cwd": cwd, "what": what, "env": env,
                         "defaults": (cwd / build.DEFAULTS).read_text()})
            Path(args[args.index("-o") + 1]).write_text("binary")
        return run

    monkeypatch.setattr(build, "_runner", runner)
    monkeypatch.setattr(build, "check_go", lambda tree: "go1.26.8")
    return runs


def test_rhoai_defaults_fill_each_placeholder_from_params_env():
    assert build.rhoai_defaults(ODH_DEFAULTS, PARAMS) == (
        "modelMeshImage:\n  name: quay.io/opendatahub/modelmesh:v1\nrestProxy:\n  image:\n"
        "    name: quay.io/opendatahub/rest-proxy:v1\n")


def test_an_unknown_placeholder_is_one_error_naming_it():
    with pytest.raises(ToolError, match=r"\$\(odh-nope\) has no value in config/overlays/odh/params.env"):
        build.rhoai_defaults("name: $(odh-nope)\n", PARAMS)


def test_a_tarball_of_another_commit_names_the_file_and_the_pin(tmp_path, cache):
    tarball(tmp_path / "upstream", "modelmesh-serving-rhoai-2.25-deadbeef")
    with pytest.raises(ToolError) as error:
        build.ensure(lambda _text: None, tmp_path / "upstream")
    message = str(error.value)
    assert "modelmesh-serving-rhoai-2.25-deadbeef.tar.gz: commit deadbeef" in message
    assert "1b731c3d5cc504d8cc459d4e6546d267fae26177" in message and "\n" not in message


def test_a_missing_tarball_names_the_pinned_file(tmp_path, cache):
    tarball(tmp_path / "upstream", "modelmesh-rhoai-2.25-7b8ab742", {"pom.xml": ""})  # ModelMesh's only
    with pytest.raises(ToolError) as error:
        build.ensure(lambda _text: None, tmp_path / "upstream")
    assert "no tarball for modelmesh-serving" in str(error.value)
    assert f"{PINNED}.tar.gz" in str(error.value) and "\n" not in str(error.value)


def test_the_controller_tarball_is_never_taken_for_modelmesh(tmp_path):
    for name in (PINNED, "rest-proxy-rhoai-2.25-06948c28", "modelmesh-runtime-adapter-rhoai-2.25-c1eea3f7"):
        tarball(tmp_path, name, {"README.md": ""})
    with pytest.raises(ToolError, match="no tarball for modelmesh "):
        reference_build.find_sources(tmp_path)


def test_a_finished_build_is_cached(tmp_path, cache, go_runs):
    want = build.planned()
    want.tree.mkdir(parents=True)
    want.binary.write_text("binary")
    (want.binary.parent / build.MARKER).write_text(json.dumps({"commit": want.commit}))
    got = build.ensure(lambda _text: None, tmp_path / "no-sources-needed")
    assert got == want and not got.built and go_runs == []


def test_a_directory_without_the_marker_is_wiped_and_built_in_place(tmp_path, cache, go_runs):
    tarball(tmp_path / "upstream")
    want = build.planned()
    want.tree.mkdir(parents=True)
    want.binary.write_text("stale")                     # an interrupted build: binary, no marker
    (want.tree / "leftover.go").write_text("package main\n")
    got = build.ensure(lambda _text: None, tmp_path / "upstream")
    assert got.built and got.binary == want.binary and got.tree == cache / "controller-1b731c3d" / "src"
    assert not (want.tree / "leftover.go").exists() and (want.tree / "go.mod").is_file()
    [run] = go_runs
    assert run["cwd"] == want.tree and "-trimpath" not in run["args"] and run["what"] == "controller 1b731c3d"
    assert run["env"]["GOFLAGS"] == "-buildvcs=false"
    assert "quay.io/opendatahub/modelmesh:v1" in run["defaults"]  # RHOAI's defaults were in place before the build
    marker = json.loads((want.binary.parent / build.MARKER).read_text())
    assert marker["commit"] == want.commit and marker["go"] == "go1.26.8"
    assert build.ensure(lambda _text: None, tmp_path / "upstream").built is False


def test_a_go_older_than_go_mod_is_one_clear_error(tmp_path, monkeypatch):
    fake_go = tmp_path / "go"
    fake_go.write_text("#!/bin/sh\necho go1.24.4\n")
    fake_go.chmod(0o755)
    monkeypatch.setattr(build.binaries, "go", lambda: str(fake_go))
    (tmp_path / "go.mod").write_text("module x\n\ngo 1.25.7\n")
    with pytest.raises(ToolError, match=r"needs Go >= 1\.25\.7; `go` on the PATH is go1\.24\.4"):
        build.check_go(tmp_path)


def test_the_command_line_says_which_tarball_is_missing(tmp_path, cache, cli):
    (tmp_path / "empty").mkdir()
    run = cli("local", "build", "controller", "--source", str(tmp_path / "empty"))
    assert run.code == 2 and f"{PINNED}.tar.gz" in run.err and "Traceback" not in run.err
