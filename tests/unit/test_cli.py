"""Usage and environment errors: one line on stderr, exit 2, no traceback.

In-process runs check the messages and that main() returns its exit code; an exception escaping main() would
raise into the test, never print a Traceback, so the process contract is checked on a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.unit
def test_missing_path_is_a_usage_error(cli):
    run = cli("validate", "no/such/dir")
    assert run.returned and run.code == 2
    assert run.err.strip() == "mmgitops: error: no/such/dir: no such file or directory"


@pytest.mark.unit
def test_missing_crds_dir_is_an_environment_error(cli):
    run = cli("validate", "--crds", "no-such-crds", "overlays/serving")
    assert run.returned and run.code == 2
    assert "--crds no-such-crds: not a directory" in run.err


@pytest.mark.unit
def test_missing_kustomize_says_how_to_get_it(cli, monkeypatch):
    monkeypatch.setenv("MMGITOPS_KUSTOMIZE", "/nonexistent/kustomize build")
    run = cli("validate", "overlays/serving")
    assert run.returned and run.code == 2
    assert "make setup" in run.err


@pytest.mark.unit
def test_no_command_prints_help_and_exits_2():
    proc = subprocess.run([sys.executable, "-m", "mmgitops"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "validate" in proc.stdout and "plan" in proc.stdout


@pytest.mark.unit
def test_json_output_of_a_broken_file_lists_the_finding(cli):
    run = cli("validate", "--format", "json", "tests/unit/fixtures/channel-3x.yaml")
    data = json.loads(run.out)
    assert run.code == 1
    assert data["ok"] is False
    assert [f["rule"] for f in data["findings"]] == ["rhoai-channel-2x"]


@pytest.mark.unit
def test_apply_without_a_kubeconfig_says_how_to_get_one(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    run = cli("apply", "overlays/serving")
    assert run.returned and run.code == 2
    assert "pass --kubeconfig FILE or set KUBECONFIG" in run.err


@pytest.mark.unit
def unreachable_kubeconfig(directory: Path) -> Path:
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\n")
    return kubeconfig


@pytest.mark.unit
def test_apply_to_an_unreachable_api_server_is_one_line(cli, tmp_path):
    run = cli("apply", "overlays/serving", "--kubeconfig", str(unreachable_kubeconfig(tmp_path)), "--timeout", "5")
    assert run.returned and run.code == 2
    assert run.err.startswith("mmgitops: error: cannot reach the API server")
    assert len(run.err.splitlines()) == 1, run.err


@pytest.mark.unit
@pytest.mark.parametrize(("flags", "message"), [
    (("--capacity", "100"), "mmgitops local mesh: error: argument --capacity: 100: must be at least 8192"),
    (("--instances", "0"), "mmgitops local mesh: error: argument --instances: 0: must be at least 1"),
    (("--samples", "many"), "mmgitops local mesh: error: argument --samples: 'many' is not a whole number"),
    (("--capacity", "40960"), "mmgitops: error: --capacity: ModelMesh would refuse to start: Reported model "
                              "capacity 0.000GiB too small relative to advertised default model size of 0MiB "
                              "(at least 81920 bytes)"),
    (("--storage-config", "no-such.json"), "mmgitops: error: --storage-config no-such.json: no such file"),
])
def test_bad_mesh_options_are_refused_before_anything_starts(cli, monkeypatch, tmp_path, flags, message):
    monkeypatch.setenv("MMGITOPS_STATE", str(tmp_path))
    run = cli("local", "mesh", "up", *flags)
    assert run.code == 2
    assert run.returned == message.startswith("mmgitops: error:")  # else argparse refused it, by SystemExit
    assert run.err.strip() == message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.unit
@pytest.mark.parametrize(("args", "message"), [
    (("bench", "mesh", "--requests", "-1"), "mmgitops bench mesh: error: argument --requests: -1: must be at least 1"),
    (("bench", "mesh", "--seconds", "0"), "mmgitops bench mesh: error: argument --seconds: 0: must be a positive "
                                          "number of seconds"),
    (("bench", "conform", "--repeats", "0"), "mmgitops bench conform: error: argument --repeats: 0: must be at "
                                             "least 1"),
    (("apply", "overlays/serving", "--timeout", "nan"), "mmgitops apply: error: argument --timeout: nan: must be a "
                                                        "positive number of seconds"),
])
def test_bad_numbers_are_one_line_and_exit_2(cli, args, message):
    run = cli(*args)
    assert (run.code, run.err.strip()) == (2, message)
    assert not run.returned  # argparse refuses it by SystemExit(2), before main() runs a command


@pytest.mark.unit
def test_mesh_status_and_down_without_a_mesh(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("MMGITOPS_STATE", str(tmp_path))
    assert cli("local", "mesh", "status").out.strip() == "no local mesh"
    assert cli("local", "mesh", "down").out.strip() == "no local mesh was running"


# One of each way to fail: a usage error, an environment error, a network error, an option argparse refuses.
PROCESS_CASES = {
    "missing-path": (("validate", "no/such/dir"), {}, "mmgitops: error: no/such/dir: no such file or directory"),
    "no-kustomize": (("validate", "overlays/serving"), {"MMGITOPS_KUSTOMIZE": "/nonexistent/kustomize build"},
                     "mmgitops: error: cannot run /nonexistent/kustomize: "),
    "unreachable-api-server": (("apply", "overlays/serving", "--kubeconfig", "{kubeconfig}", "--timeout", "5"), {},
                               "mmgitops: error: cannot reach the API server"),
    "bad-number": (("bench", "mesh", "--requests", "-1"), {},
                   "mmgitops bench mesh: error: argument --requests: -1: must be at least 1"),
}


@pytest.mark.unit
@pytest.mark.parametrize(("args", "env", "message"), PROCESS_CASES.values(), ids=PROCESS_CASES.keys())
def test_an_error_is_exit_2_and_one_line_on_stderr_from_a_real_process(mmgitops_process, tmp_path, args, env,
                                                                       message):
    kubeconfig = str(unreachable_kubeconfig(tmp_path))
    proc = mmgitops_process(*(a.replace("{kubeconfig}", kubeconfig) for a in args), env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(message), proc.stderr
    assert proc.stdout == ""


@pytest.mark.unit
@pytest.mark.parametrize(("flags", "message"), [
    ((), "mmgitops: error: local cluster kubeconfig: name the account with --service-account NAMESPACE/NAME (the "
         "admin kubeconfig's path is in `mmgitops local cluster status`)"),
    (("--service-account", "runner"), "mmgitops: error: --service-account runner: expected NAMESPACE/NAME"),
    (("--service-account", "ns/runner"), "mmgitops: error: no local cluster is up: `mmgitops local cluster up` "
                                         "first"),
])
def test_a_service_account_kubeconfig_needs_an_account_and_a_cluster(cli, monkeypatch, tmp_path, flags, message):
    monkeypatch.setenv("MMGITOPS_STATE", str(tmp_path))
    run = cli("local", "cluster", "kubeconfig", *flags)
    assert (run.code, run.err.strip()) == (2, message)


@pytest.mark.unit
@pytest.mark.parametrize(("state", "message"), [
    ("{bad", "not the state file mmgitops writes: Expecting property name"),
    ("[1]", "not the state file mmgitops writes; the processes it listed may still run: stop them, then remove"),
    ('{"kubeconfig": "KC"}', "the local cluster's API server at https://127.0.0.1:1 does not answer"),
])
def test_local_cluster_kubeconfig_on_a_broken_state_or_a_stopped_server_is_one_line(cli, monkeypatch, tmp_path,
                                                                                     state, message):
    kubeconfig = tmp_path / "admin.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncurrent-context: x\n"
                          "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                          "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                          "users: [{name: u, user: {token: t}}]\n")
    (tmp_path / "cluster-mmgitops").mkdir()
    (tmp_path / "cluster-mmgitops" / "cluster.json").write_text(state.replace("KC", str(kubeconfig)))
    monkeypatch.setenv("MMGITOPS_STATE", str(tmp_path))
    run = cli("local", "cluster", "kubeconfig", "--service-account", "ns/runner")
    assert run.code == 2 and message in run.err and run.err.count("\n") == 1, run.err


@pytest.mark.unit
def test_conform_cleanup_refuses_a_missing_storage_config(cli, tmp_path):
    run = cli("conform", "cleanup", "--namespace", "team-a", "--storage-config", str(tmp_path / "none.json"))
    assert (run.code, run.err.strip()) == (2, f"mmgitops: error: --storage-config {tmp_path / 'none.json'}: no such "
                                              "file")


def _deep(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    return path


def _loop(tmp_path: Path) -> Path:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path / "loop"


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo")
    return tmp_path / "fifo"


# Found by a sweep of 374 broken inputs over every command (2026-12-07): each was a traceback or a hang.
SWEEP_CASES = {
    "deep-kubeconfig": (lambda t: ("apply", "overlays/serving", "--kubeconfig", str(_deep(t, "kc"))), {},
                        "not a kubeconfig (nested too deeply to read)"),
    "deep-storage-config": (lambda t: ("conform", "--endpoint", "p=127.0.0.1:1", "--storage-config",
                                       str(_deep(t, "sc.json"))), {}, "JSON nested too deeply to read"),
    "deep-results": (lambda t: ("conform", "report", str(_deep(t, "results.json").parent)), {},
                     "JSON nested too deeply to read"),
    "plan-symlink-loop": (lambda t: ("plan", str(_loop(t))), {}, "a symlink loop"),
    "kubeconfig-symlink-loop": (lambda t: ("conform", "--target", "cluster", "--kubeconfig", str(_loop(t)),
                                           "--storage-config", "components/modelmesh/storage/storage-config.env"
                                           ".example"), {}, "--kubeconfig"),
    "kubeconfig-fifo": (lambda t: ("conform", "cleanup", "--kubeconfig", str(_fifo(t))), {}, "not a regular file"),
    "cache-is-a-file": (lambda t: ("local", "build", "controller"), {"MMGITOPS_CACHE": "pyproject.toml"},
                        "cache directory pyproject.toml: not a directory"),
    "source-is-a-file": (lambda t: ("local", "build", "controller", "--source", "pyproject.toml"), {},
                         "--source pyproject.toml: not a directory"),
}


@pytest.mark.unit
@pytest.mark.parametrize(("args", "env", "message"), SWEEP_CASES.values(), ids=SWEEP_CASES.keys())
def test_inputs_that_once_broke_a_command_are_one_line_and_exit_2(cli, monkeypatch, tmp_path, args, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = cli(*args(tmp_path))
    assert run.returned and run.code == 2, run
    assert len(run.err.strip().splitlines()) == 1 and message in run.err, run.err
