"""The local Argo CD's parts that need no cluster: the served snapshot, the generated repo-source patch, what the
GitOps operator stand-in writes into argocd-cm, and the command line's usage errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "checkout"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("secret.env\n")
    (repo / "kept.yaml").write_text("a: 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def test_snapshot_serves_the_working_tree_and_leaves_the_checkout_alone(checkout, tmp_path):
    from mmgitops.lab.argocd import gitserver

    (checkout / "kept.yaml").write_text("a: 2\n")       # uncommitted change
    (checkout / "new.yaml").write_text("b: 1\n")        # untracked, not ignored
    (checkout / "secret.env").write_text("KEY=x\n")     # git-ignored
    status_before = git(checkout, "status", "--porcelain")
    objects_before = sorted(p.name for p in (checkout / ".git/objects").rglob("*"))
    repo = gitserver.init(tmp_path / "served")
    snap = gitserver.snapshot(checkout, repo, {"gen/patch.yaml": "generated\n"})
    assert snap.dirty and snap.base == git(checkout, "rev-parse", "HEAD")
    out = gitserver.export(repo, tmp_path / "export")
    assert (out / "kept.yaml").read_text() == "a: 2\n"
    assert (out / "new.yaml").read_text() == "b: 1\n"
    assert (out / "gen/patch.yaml").read_text() == "generated\n"
    assert not (out / "secret.env").exists()
    assert git(checkout, "status", "--porcelain") == status_before
    assert sorted(p.name for p in (checkout / ".git/objects").rglob("*")) == objects_before
    assert git(repo, "rev-parse", "main^") == snap.base


def test_a_clean_checkout_is_served_as_head_plus_the_generated_files(checkout, tmp_path):
    from mmgitops.lab.argocd import gitserver

    repo = gitserver.init(tmp_path / "served")
    snap = gitserver.snapshot(checkout, repo, {"gen.yaml": "x\n"})
    assert not snap.dirty
    assert git(repo, "diff", "--name-only", "main^", "main") == "gen.yaml"


def test_a_commit_to_the_served_repository_removes_and_writes_files(checkout, tmp_path):
    from mmgitops.lab.argocd import gitserver

    repo = gitserver.init(tmp_path / "served")
    gitserver.snapshot(checkout, repo, {})
    gitserver.commit(repo, {"kept.yaml": None, "other.yaml": "c: 1\n"}, "change")
    out = gitserver.export(repo, tmp_path / "export")
    assert not (out / "kept.yaml").exists() and (out / "other.yaml").read_text() == "c: 1\n"


def test_repo_source_patch_points_every_application_at_the_local_server():
    from mmgitops.lab.argocd import reposource

    generated = reposource.generated(ROOT, "git://127.0.0.1:9418/modelmesh-gitops.git", "main")
    component = yaml.safe_load(generated[reposource.PATH])
    ops = [op for patch in component["patches"] for op in yaml.safe_load(patch["patch"])]
    assert {op["path"]: op["value"] for op in ops} == {
        "/spec/source/repoURL": "git://127.0.0.1:9418/modelmesh-gitops.git", "/spec/source/targetRevision": "main"}


def test_repo_source_with_an_op_it_cannot_set_is_an_error_naming_the_file(tmp_path):
    from mmgitops.errors import ToolError
    from mmgitops.lab.argocd import reposource

    path = tmp_path / reposource.PATH
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"kind": "Component", "patches": [{"patch": yaml.safe_dump(
        [{"op": "replace", "path": "/spec/source/chart", "value": "x"}])}]}))
    with pytest.raises(ToolError, match=r"repo-source/kustomization.yaml: patch op '/spec/source/chart'"):
        reposource.generated(tmp_path, "git://x", "main")


def test_gitops_operator_standin_writes_health_checks_as_argocd_operator_keys_them():
    from mmgitops.lab.standins import gitops

    data = gitops.argocd_cm_data({"resourceHealthChecks": [
        {"group": "argoproj.io", "kind": "Application", "check": "return {}"},
        {"group": "", "kind": "Service", "check": "x"}]})
    assert data["resource.customizations.health.argoproj.io_Application"] == "return {}"
    assert data["resource.customizations.health.Service"] == "x"
    assert data["application.resourceTrackingMethod"] == "label"
    assert data["resource.exclusions"] == ""


def test_the_repositorys_argocd_cr_gives_one_key_per_health_check():
    from mmgitops.cli.common import kustomize
    from mmgitops.gitops.apply import health
    from mmgitops.lab.standins import gitops

    scripts = health.scripts(ROOT, tuple(kustomize()))
    checks = [{"group": g, "kind": k, "check": s} for (g, k), s in scripts.items()]
    keys = {k for k in gitops.argocd_cm_data({"resourceHealthChecks": checks}) if k.startswith(gitops.HEALTH_PREFIX)}
    assert len(keys) == len(scripts) >= 5


def test_sync_of_an_unknown_profile_names_the_known_ones(cli):
    run = cli("local", "argocd", "sync", "no-such-profile")
    assert run.returned and run.code == 2
    assert "argocd/bootstrap/no-such-profile: no such bootstrap" in run.err and "conformance" in run.err


def test_sync_without_a_profile_is_a_usage_error(cli):
    run = cli("local", "argocd", "sync")
    assert run.returned and run.code == 2
    assert "name a profile" in run.err
