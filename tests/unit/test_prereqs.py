"""The prerequisite check: everything a command needs and this machine lacks, named at once in one line before
anything is built or started; `--install` installs the Debian packages among them, saying so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmgitops.errors import ToolError
from mmgitops.lab import prereqs

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with none of it: no command on the PATH, no JDK, not root."""
    monkeypatch.setattr(prereqs.shutil, "which", lambda _name: None)
    monkeypatch.setattr(prereqs, "find_jdk", lambda: None)
    monkeypatch.setattr(prereqs.os, "geteuid", lambda: 1000)


def test_every_missing_need_is_named_in_one_line_with_its_fix(bare):
    with pytest.raises(ToolError) as refused:
        prereqs.check("`demo`", "demo", "reference")
    line = str(refused.value)
    assert "\n" not in line and line.startswith("`demo` needs what this machine lacks: ")
    for named in ("etcd (the local mesh's registry; Debian package etcd-server)", "git (", "redis-server (",
                  "mvn (", "ip (", "unshare and nsenter (", "a JDK 21+ (", f"Go {prereqs.go_needed()}+ (",
                  "root (", "install Go from https://go.dev/dl/"):
        assert named in line, named
    assert line.endswith("`apt-get install etcd-server iproute2 util-linux git redis-server maven` installs the "
                         "packages")


def test_nothing_missing_is_silent(monkeypatch):
    monkeypatch.setattr(prereqs, "missing", lambda _use: [])
    prereqs.check("`local cluster up`", "cluster")


def test_install_runs_apt_get_for_the_debian_packages_only_and_says_so(bare, monkeypatch, capsys):
    calls: list[list[str]] = []

    def run(args, **_kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(prereqs.subprocess, "run", run)
    assert prereqs.main(["mesh", "--install"]) == 2  # apt-get "worked", but `which` still finds no etcd
    assert calls == [["sudo", "apt-get", "update", "-q"], ["sudo", "apt-get", "install", "-y", "-q", "etcd-server"]]
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "prereqs: installing the Debian packages etcd-server (apt-get)"
    assert err[1].startswith("prereqs: `mesh` needs what this machine lacks: etcd")


def test_a_failing_apt_get_is_one_line(bare, monkeypatch, capsys):
    monkeypatch.setattr(prereqs.subprocess, "run",
                        lambda args, **_: subprocess.CompletedProcess(args, 100, "", "E: Unable to locate package"))
    assert prereqs.main(["mesh", "--install"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "prereqs: apt-get update failed (exit 100): E: Unable to locate package")


def test_cold_caches_need_more_disk_than_warm_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("MMGITOPS_CACHE", str(tmp_path / "cache"))
    assert prereqs.disk_needed_gb() == prereqs.COLD_DISK_GB
    (tmp_path / "cache" / "bin").mkdir(parents=True)
    assert prereqs.disk_needed_gb() == prereqs.WARM_DISK_GB


def test_it_runs_before_the_venv_exists_with_the_standard_library_alone(tmp_path):
    """`make` and `.ci/run` run it with the system python3 and PYTHONPATH=tools; -S keeps site-packages out."""
    done = subprocess.run([sys.executable, "-S", "-m", "mmgitops.lab.prereqs", "mesh"], capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT / "tools"), "PATH": str(tmp_path),
                                          "HOME": str(tmp_path)}, timeout=60)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.startswith("prereqs: `mesh` needs what this machine lacks: etcd (")


def test_local_cluster_up_stops_in_one_line_before_making_anything(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "MMGITOPS_STATE": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "mmgitops", "local", "cluster", "up"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "`local cluster up` needs what this machine lacks: etcd (" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "state").exists()


def test_off_a_terminal_each_step_is_a_line_with_its_time_and_repeats_only_after_a_while(capsys, monkeypatch):
    """A CI log gets no live status line: it gets a line per step, and one more every REPEAT_S for a long one."""
    from mmgitops.cli import common

    now = [0.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: now[0])
    with common.progress("Starting the local cluster...") as say:
        for at, text in ((1, "kubernetes v1.31.4: 10 modules fetched, 1 s"),
                         (2, "kubernetes v1.31.4: 12 modules fetched, 2 s"),  # the same step, new figures: not yet
                         (40, "kubernetes v1.31.4: 90 modules fetched, 40 s"),  # ... until REPEAT_S has passed
                         (41, "starting etcd")):
            now[0] = at
            say(text)
    assert capsys.readouterr().err.splitlines() == [
        "[   0 s] Starting the local cluster...", "[   1 s] kubernetes v1.31.4: 10 modules fetched, 1 s",
        "[  40 s] kubernetes v1.31.4: 90 modules fetched, 40 s", "[  41 s] starting etcd"]
