"""The run's verdict: a check not reached is never a pass. The plugin on tiny suites of its own, run as pytest
runs the real one: exit status, pytest's last line, the conformance summary's verdict, results.json and JUnit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from mmgitops.conformance import verdict

pytestmark = pytest.mark.unit
HEAD = """
import pytest
from mmgitops.conformance.verdict import not_reached
pytestmark = pytest.mark.routing
def test_passes(): pass
def test_does_not_apply(): pytest.skip("needs a Kubernetes API")
"""


def run_suite(tmp_path: Path, body: str) -> tuple[subprocess.CompletedProcess[str], dict, ET.Element]:
    (tmp_path / "test_tiny.py").write_text(HEAD + textwrap.dedent(body), encoding="utf-8")
    report = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "pytest", "test_tiny.py", "-p", "no:cacheprovider", "-q",
                           "--conformance-report", str(report), "--junitxml", str(report / "junit.xml")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    results = json.loads((report / "results.json").read_text(encoding="utf-8"))
    return done, results, ET.parse(report / "junit.xml").getroot()


def test_a_check_not_reached_makes_the_run_incomplete_and_names_why(tmp_path):
    done, results, junit = run_suite(tmp_path, """
        def test_cannot_kill(): not_reached("--kill-command for pod a exited 2: refused")
        def test_cannot_kill_either(): not_reached("--kill-command for pod a exited 2: refused")
        def test_cannot_read_node(): not_reached("the runner may not read node n1")
    """)
    assert done.returncode == verdict.INCOMPLETE, done.stdout
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == ("conformance: incomplete: 3 checks not reached (2 x --kill-command for pod a exited 2: "
                         "refused; the runner may not read node n1)")
    assert lines[-1].startswith("1 passed, 1 skipped, 3 not reached in ")
    assert (results["verdict"], results["exitstatus"]) == ("incomplete", verdict.INCOMPLETE)
    assert {t["nodeid"].rpartition("::")[2]: t["outcome"] for t in results["tests"]} == {
        "test_passes": "passed", "test_does_not_apply": "skipped", "test_cannot_kill": "not reached",
        "test_cannot_kill_either": "not reached", "test_cannot_read_node": "not reached"}
    skipped = {case.get("name"): case.find("skipped") for case in junit.iter("testcase")}
    assert {name: s.get("type") for name, s in skipped.items() if s is not None} == {
        "test_does_not_apply": "pytest.skip", "test_cannot_kill": "not-reached",
        "test_cannot_kill_either": "not-reached", "test_cannot_read_node": "not-reached"}
    assert skipped["test_cannot_read_node"].get("message") == "not reached: the runner may not read node n1"
    assert "incomplete: 3 checks not reached" in (tmp_path / "report" / "report.html").read_text(encoding="utf-8")


def test_a_failure_outranks_a_check_not_reached(tmp_path):
    done, results, _ = run_suite(tmp_path, """
        def test_fails(): assert False
        def test_cannot_kill(): not_reached("no --kill-command")
    """)
    assert (done.returncode, results["verdict"]) == (1, "failed")
    assert "conformance: failed: 1 check of 4 failed" in done.stdout


def test_only_checks_that_do_not_apply_leave_the_run_certified(tmp_path):
    done, results, _ = run_suite(tmp_path, "")
    assert (done.returncode, results["verdict"]) == (0, "certified")
    assert "conformance: certified: 1 check passed, 1 not applicable to this target" in done.stdout


@pytest.mark.parametrize(("code", "word"), [(0, "certified"), (1, "failed"), (verdict.INCOMPLETE, "incomplete")])
def test_mmgitops_conform_ends_with_the_verdict_and_its_own_exit_status(code, word, monkeypatch, tmp_path):
    from mmgitops.conformance import run

    monkeypatch.setattr(run, "preflight", lambda _: None)
    monkeypatch.setattr(run, "run_pytest", lambda *_: code)
    said: list[str] = []
    assert run.run({}, notice=said.append) == {0: 0, 1: 1, verdict.INCOMPLETE: 3}[code]
    assert said[-1].startswith(f"{word}: ") and said[-1].endswith(f"(exit {run.PYTEST_TO_EXIT[code]})")
