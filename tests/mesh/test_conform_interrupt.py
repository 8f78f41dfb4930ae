"""`mmgitops conform` owns what it starts: Ctrl-C in the middle of a run stops every process the run started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mmgitops import procs

pytestmark = pytest.mark.mesh


def processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line or environment holds `text`: everything a run started carries its state
    directory in one or the other (MMGITOPS_STATE is set for the meshes it starts)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            seen = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in seen and procs.alive(int(proc.name)):
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {command[:200]}")
    return found


def mesh_pids(root: Path) -> list[int]:
    pids = []
    for state_file in root.rglob("mesh.json"):
        state = json.loads(state_file.read_text())
        pids += [i["pid"] for i in state.get("instances", [])]
        pids += [state[part]["pid"] for part in ("etcd", "s3") if part in state]
    return pids


def test_ctrl_c_mid_run_stops_every_process_the_run_started(tmp_path: Path) -> None:
    temp = tmp_path / "pytest"
    temp.mkdir()
    env = {**os.environ, "PYTEST_DEBUG_TEMPROOT": str(temp), "MMGITOPS_STATE": str(tmp_path / "state")}
    # A session of its own, so that the signal below reaches the CLI's process group as a terminal's Ctrl-C would.
    # SIGINT as a terminal leaves it: a test run started in the background by a non-interactive shell inherits it
    # ignored, and Python then never raises KeyboardInterrupt, so the CLI would never see the Ctrl-C below.
    cli = subprocess.Popen([sys.executable, "-m", "mmgitops", "conform", "-m", "routing"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while not (pids := mesh_pids(temp)) or not all(map(procs.alive, pids)):
            assert cli.poll() is None, f"the run ended before its mesh was up: {cli.communicate()[0][-2000:]}"
            assert time.monotonic() < deadline, "no local mesh of the run came up within 300 s"
            time.sleep(1)
        time.sleep(5)  # the checks are running now
        os.killpg(cli.pid, signal.SIGINT)
        output, _ = cli.communicate(timeout=240)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
    assert cli.returncode == 130, output[-3000:]
    assert "removing what it started" in output
    assert not [pid for pid in pids if procs.alive(pid)]
    assert processes_mentioning(str(tmp_path)) == []
