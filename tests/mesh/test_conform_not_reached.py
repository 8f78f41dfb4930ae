"""A run that could not reach an applicable check is never certified (docs/conformance.md, Exit status): pods given
by address with a kill command that fails and no --gpu-endpoint leave resilience and packing not reached, and
`mmgitops conform` says so in its exit status, its last line, results.json and JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.mesh.conftest import local_mesh, mmgitops

pytestmark = pytest.mark.mesh


def test_a_failing_kill_command_and_no_gpu_endpoint_leave_the_run_incomplete(tmp_path: Path) -> None:
    with local_mesh(tmp_path / "state", "notreached", "--instances", "2", "--min-churn-age-ms", "1500") as mesh:
        endpoints = ",".join(f"{i['id']}={i['grpc']}" for i in mesh.state["instances"])
        run = mmgitops("conform", "--endpoint", endpoints, "--storage-config", mesh.state["storage_config"],
                       "--kill-command", "echo refused by policy >&2; exit 2", "-m", "resilience or packing",
                       "--report", str(tmp_path / "r"), env=mesh.env, timeout=600)
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1].startswith("mmgitops: incomplete: "), run.stderr[-1000:]
    found = json.loads((tmp_path / "r" / "results.json").read_text(encoding="utf-8"))
    why = {(t["group"], t["outcome"], t["skip_reason"]) for t in found["tests"]}
    assert {(group, outcome) for group, outcome, _ in why} == {("resilience", "not reached"),
                                                               ("packing", "not reached")}, why
    assert all("exited 2: refused by policy" in reason for group, _, reason in why if group == "resilience"), why
    assert all("--gpu-endpoint" in reason for group, _, reason in why if group == "packing"), why
    assert (found["verdict"], found["exitstatus"]) == ("incomplete", 6)
    assert "not reached" in run.stdout.strip().splitlines()[-1]  # pytest's own last line counts them
    types = {case.get("name"): case.find("skipped").get("type")
             for case in ET.parse(tmp_path / "r" / "junit.xml").getroot().iter("testcase")}
    assert set(types.values()) == {"not-reached"}, types
