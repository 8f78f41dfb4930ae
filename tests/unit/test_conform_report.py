"""`mmgitops conform`: the report from results.json, results.json from the plugin, usage errors and cleanup."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mmgitops.conformance import report
from mmgitops.errors import ToolError

pytestmark = pytest.mark.unit


def results(tests: list[dict]) -> dict:
    return {"schema": 1, "started": "2026-01-01T00:00:00+0000", "duration_s": 12.5, "exitstatus": 1,
            "options": {"target": "mesh", "endpoint": "", "markexpr": ""},
            "counts": {"passed": 2, "failed": 1}, "tests": tests}


def check(nodeid: str, group: str, outcome: str, figures: dict | None = None, **extra: object) -> dict:
    return {"nodeid": nodeid, "group": group, "outcome": outcome, "duration_s": 1.25, "skip_reason": "",
            "message": "", "figures": figures or {}, **extra}


@pytest.fixture
def rendered(tmp_path: Path) -> str:
    tests = [
        check("tests/conformance/test_coldload.py::test_cold_then_warm", "coldload", "passed",
              {"cold_ms": {"value": [410.0, 520.5, 390.0], "unit": "ms"},
               "warm_ms": {"value": [2.0, 2.4, 1.8, 3.1], "unit": "ms"}}),
        check("tests/conformance/test_packing.py::test_spread", "packing", "passed",
              {"models_per_pod": {"value": {"mm-0": 3, "mm-1": 2}, "unit": ""}, "pods": {"value": 2, "unit": ""}}),
        check("tests/conformance/test_routing.py::test_<odd>_name", "routing", "failed", message="assert 1 == 2"),
    ]
    (tmp_path / "results.json").write_text(json.dumps(results(tests)), encoding="utf-8")
    return report.render(tmp_path).read_text(encoding="utf-8")


def test_report_has_a_row_per_check_with_its_outcome_and_figures(rendered):
    assert re.search(r"<td>coldload</td>\s*<td[^>]*>test_cold_then_warm</td><td class=\"passed\">passed</td>", rendered)
    assert "cold_ms: n=3 p50=410 ms; warm_ms: n=4 p50=2.2 ms" in rendered
    assert "models_per_pod: mm-0=3, mm-1=2; pods=2" in rendered
    # Names and messages are escaped, not markup.
    assert "test_&lt;odd&gt;_name" in rendered and '<td class="failed">failed</td>' in rendered
    assert "assert 1 == 2" in rendered


def test_report_plots_what_was_recorded_and_says_what_was_left_out(rendered):
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', rendered)
    assert images == ["Cold vs warm latency", "Models per pod"]
    assert "Left out: no check recorded eviction_timeline in this run." in rendered
    assert "http" not in rendered.replace("https://", "")  # one self-contained file


def test_report_draws_an_eviction_timeline(tmp_path):
    timeline = [{"t_s": 0.0, "model": "a", "state": "Loaded"}, {"t_s": 1.0, "model": "b", "state": "Loaded"},
                {"t_s": 2.5, "model": "a", "state": "Standby"}]
    tests = [check("tests/conformance/test_eviction.py::test_lru", "eviction", "passed",
                   {"eviction_timeline": {"value": timeline, "unit": ""}})]
    (tmp_path / "results.json").write_text(json.dumps(results(tests)), encoding="utf-8")
    page = report.render(tmp_path).read_text(encoding="utf-8")
    assert re.findall(r'<img alt="([^"]+)"', page) == ["Eviction timeline"]
    assert "eviction_timeline: 3 events" in page
    assert "no check recorded cold_ms / warm_ms" in page and "no check recorded models_per_pod" in page


SAMPLE = '''
import pytest

@pytest.mark.routing
def test_fast(record):
    record("warm_ms", [1.5, 2.5], "ms")
    record("pods", 2)

@pytest.mark.eviction
def test_broken(record):
    record("models_per_pod", {"mm-0": 1})
    assert 1 == 2, "wrong pod"

def test_skipped():
    pytest.skip("needs a cluster")
'''


def test_plugin_writes_results_json_with_outcomes_and_figures(tmp_path):
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(SAMPLE), encoding="utf-8")
    out = tmp_path / "report"
    # The plugin loads by its pytest11 entry point, as in any environment that installs mmgitops.
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--conformance-report",
                           str(out), "test_sample.py"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "conformance summary" in proc.stdout
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    tests = {t["nodeid"].split("::")[-1]: t for t in data["tests"]}
    assert tests["test_fast"]["outcome"] == "passed" and tests["test_fast"]["group"] == "routing"
    assert tests["test_fast"]["figures"] == {"warm_ms": {"value": [1.5, 2.5], "unit": "ms"},
                                             "pods": {"value": 2, "unit": ""}}
    assert tests["test_broken"]["outcome"] == "failed" and tests["test_broken"]["group"] == "eviction"
    assert "wrong pod" in tests["test_broken"]["message"]
    assert tests["test_broken"]["figures"]["models_per_pod"]["value"] == {"mm-0": 1}
    assert tests["test_skipped"]["outcome"] == "skipped"
    assert tests["test_skipped"]["skip_reason"] == "needs a cluster"
    assert tests["test_skipped"]["group"] == "sample"  # no marker group: the module's name
    assert data["counts"] == {"passed": 1, "failed": 1, "skipped": 1}
    assert (out / "report.html").is_file()


@pytest.mark.parametrize(("args", "line"), [
    (("--target", "cluster"), "--target cluster needs --storage-config FILE: an S3 storage the pods can pull from"),
    (("--kubeconfig", "kc", "--context", "c"), "--kubeconfig, --context: for --target cluster only"),
    (("--endpoint", "no-port"), "--endpoint no-port: expected POD=HOST:PORT[,POD=HOST:PORT...], each pod named: "
                                "ModelMesh reports a copy's location by the last 12 characters of its pod's name"),
    (("--endpoint", "pod-a=127.0.0.1:8033,127.0.0.2:8033"), "--endpoint pod-a=127.0.0.1:8033,127.0.0.2:8033: "
                                                            "expected POD=HOST:PORT"),
    (("--endpoint", "pod-a=127.0.0.1:8033"), "--endpoint needs --storage-config FILE: an S3 storage the pods can pull "
                                             "from"),
    (("--kill-command", "true", "--rest-port", "8080"), "--rest-port, --kill-command: for --endpoint only"),
])
def test_a_flag_for_another_mode_or_a_bad_endpoint_is_one_line_and_exit_2(cli, args, line):
    run = cli("conform", *args)
    assert run.code == 2
    assert run.err.strip().startswith(f"mmgitops: error: {line}")
    assert len(run.err.strip().splitlines()) == 1


def _storage(tmp_path: Path, *keys: str) -> Path:
    path = tmp_path / "storage.json"
    path.write_text(json.dumps({key: {"type": "s3", "access_key_id": "a", "secret_access_key": "b",
                                      "endpoint_url": "http://127.0.0.1:9", "bucket": "models"} for key in keys}))
    return path


def test_cluster_target_with_two_storages_needs_a_key(cli, tmp_path):
    run = cli("conform", "--target", "cluster", "--storage-config", str(_storage(tmp_path, "a", "b")))
    assert run.code == 2
    assert run.err.strip() == f"mmgitops: error: {tmp_path / 'storage.json'}: 2 storages; choose one with --storage-key"


def test_unreachable_cluster_is_one_line_and_exit_2(cli, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\n")
    run = cli("conform", "--target", "cluster", "--kubeconfig", str(kubeconfig),
              "--storage-config", str(_storage(tmp_path, "s3")))
    assert run.code == 2
    assert run.err.startswith("mmgitops: error: cannot reach the cluster at http://127.0.0.1:1: ")
    assert run.returned and len(run.err.strip().splitlines()) == 1


def test_a_port_out_of_range_is_a_usage_error(cli, tmp_path):
    run = cli("conform", "--endpoint", "pod-a=127.0.0.1:8033", "--storage-config", str(_storage(tmp_path, "s3")),
              "--metrics-port", "70000")
    assert run.code == 2
    assert run.err.strip() == "mmgitops conform: error: argument --metrics-port: 70000: must be from 1 to 65535"


def test_an_unreachable_endpoint_is_one_line_and_exit_2(cli, tmp_path):
    run = cli("conform", "--endpoint", "pod-a=127.0.0.1:1", "--storage-config", str(_storage(tmp_path, "s3")))
    assert run.code == 2
    assert run.err.strip().splitlines()[-1] == "mmgitops: error: --endpoint: nothing answers at 127.0.0.1:1"
    assert run.returned and "error" not in run.out.lower()


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    # Both places cleanup looks, inside tmp_path: a real run's meshes elsewhere are never seen.
    monkeypatch.setenv("MMGITOPS_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("PYTEST_DEBUG_TEMPROOT", str(tmp_path / "temp"))
    return tmp_path / "state"


def test_cleanup_with_nothing_left(cli, state):
    run = cli("conform", "cleanup")
    assert run.code == 0
    assert run.out.strip() == "nothing to clean up"


def test_cleanup_removes_only_the_suites_meshes(cli, state):
    (state / "mesh-conf-0a1b2c" / "etcd").mkdir(parents=True)
    (state / "mesh-mmgitops").mkdir()
    (state / "mesh-conf-notahex").mkdir()
    run = cli("conform", "cleanup")
    assert run.code == 0
    assert run.lines == [f"removed local mesh conf-0a1b2c ({state / 'mesh-conf-0a1b2c'})"]
    assert sorted(p.name for p in state.iterdir()) == ["mesh-conf-notahex", "mesh-mmgitops"]


def test_report_of_a_directory_without_results_is_an_error(cli, tmp_path):
    run = cli("conform", "report", str(tmp_path))
    assert run.code == 2
    assert "results.json: no such file" in run.err


def test_cleanup_keeps_a_mesh_a_running_suite_uses(cli, state, tmp_path):
    import getpass
    import os

    runs = tmp_path / "temp" / f"pytest-of-{getpass.getuser()}"
    finished, running = runs / "pytest-1", runs / "pytest-2"
    (finished / "resilience-mesh0" / "mesh-res-00ff00").mkdir(parents=True)
    (running / "conformance-mesh0" / "mesh-conf-abcdef").mkdir(parents=True)
    (running / ".lock").write_text(str(os.getpid()))  # pytest's own lock: this live process owns the run
    run = cli("conform", "cleanup")
    assert run.lines == [f"removed local mesh res-00ff00 ({finished / 'resilience-mesh0' / 'mesh-res-00ff00'})",
                         f"kept local mesh conf-abcdef: a running suite uses it (pytest pid {os.getpid()})"]
    assert (running / "conformance-mesh0" / "mesh-conf-abcdef").is_dir()


@pytest.mark.parametrize(("content", "message"), [
    ("[]", "(document): [] is not of type 'object'"),
    ('{"tests": "x"}', "tests: 'x' is not of type 'array'"),
    ('{"tests": [{"nodeid": 1, "group": "g", "outcome": "passed"}]}', "tests.0.nodeid: 1 is not of type 'string'"),
    ('{"tests": [{"nodeid": "n", "group": "g"}]}', "tests.0: 'outcome' is a required property"),
])
def test_a_results_json_of_the_wrong_shape_is_one_line_naming_the_field(tmp_path, content, message):
    (tmp_path / "results.json").write_text(content)
    with pytest.raises(ToolError) as refused:
        report.render(tmp_path)
    assert str(refused.value) == (f"{tmp_path / 'results.json'}: {message} (not the results.json `mmgitops conform` "
                                  "writes)")
    assert not (tmp_path / "report.html").exists()


def test_a_report_directory_that_cannot_be_written_stops_the_run_before_it_starts(tmp_path):
    from mmgitops.conformance import run

    (tmp_path / "file").write_text("x")
    with pytest.raises(ToolError, match=r"--report .*/file/report: cannot write there: Not a directory"):
        run.writable(tmp_path / "file" / "report")


def test_a_report_page_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "results.json").write_text('{"tests": []}')
    (tmp_path / "report.html").mkdir()  # root may write anywhere, but not a file over a directory
    with pytest.raises(ToolError, match=r"report.html: cannot write: Is a directory"):
        report.render(tmp_path)
