"""The git server the local Argo CD pulls from: this checkout, served by `git daemon` on 127.0.0.1.

What is served is a bare repository of its own, never the user's: branch `main` is one commit on top of the
checkout's HEAD that holds the working tree as it is (uncommitted changes included, git-ignored files
left out) plus the generated files Argo CD needs here, such as the repo-source patch that points every
Application at this server. Nothing is written to the checkout or its .git.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mmgitops.errors import ToolError
from mmgitops.lab.spawn import spawn

REPO = "modelmesh-gitops.git"
BRANCH = "main"
# Fixed author and committer, so that a snapshot of the same tree is the same commit.
IDENTITY = {"GIT_AUTHOR_NAME": "mmgitops local argocd", "GIT_AUTHOR_EMAIL": "mmgitops@localhost",
            "GIT_COMMITTER_NAME": "mmgitops local argocd", "GIT_COMMITTER_EMAIL": "mmgitops@localhost"}


@dataclass(frozen=True)
class Snapshot:
    commit: str
    base: str          # the checkout's HEAD
    dirty: bool        # the working tree had uncommitted changes


def git_binary() -> str:
    found = shutil.which("git")
    if not found:
        raise ToolError("the local Argo CD needs `git` (Debian package git)")
    return found


def _git(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
         stdin: str | None = None) -> str:
    proc = subprocess.run([git_binary(), *args], cwd=cwd, capture_output=True, text=True, input=stdin,
                          env={**os.environ, **IDENTITY, **(env or {})})
    if proc.returncode != 0:
        last = ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1]
        raise ToolError(f"git {args[0]} failed: {last}")
    return proc.stdout.strip()


def init(served: Path) -> Path:
    """The bare repository under `served`, created when missing."""
    repo = served / REPO
    if not (repo / "HEAD").is_file():
        repo.mkdir(parents=True, exist_ok=True)
        _git(["init", "--quiet", "--bare", "--initial-branch", BRANCH, str(repo)])
    return repo


def snapshot(checkout: Path, repo: Path, generated: dict[str, str]) -> Snapshot:
    """Make `main` of the served repository the checkout's working tree plus `generated` (path -> text)."""
    if _git(["rev-parse", "--is-inside-work-tree"], cwd=checkout) != "true":
        raise ToolError(f"{checkout} is not a git checkout: the local Argo CD serves a git repository")
    base = _git(["rev-parse", "HEAD"], cwd=checkout)
    dirty = bool(_git(["status", "--porcelain"], cwd=checkout))
    # HEAD's objects into the served repository; the working tree's new blobs are written there too.
    _git(["fetch", "--quiet", "--no-tags", str(checkout), f"+{base}:refs/heads/checkout"], cwd=repo)
    with tempfile.TemporaryDirectory(prefix="mmgitops-index-") as tmp:
        env = {"GIT_DIR": str(repo), "GIT_WORK_TREE": str(checkout), "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(["read-tree", base], cwd=checkout, env=env)
        _git(["add", "--all", "."], cwd=checkout, env=env)
        for path, text in sorted(generated.items()):
            blob = _git(["hash-object", "-w", "--stdin"], env=env, stdin=text)
            _git(["update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"], env=env)
        tree = _git(["write-tree"], env=env)
    message = (f"Local Argo CD snapshot of {base[:12]}{' with uncommitted changes' if dirty else ''}\n\n"
               f"Generated here: {', '.join(sorted(generated)) or 'nothing'}.\n")
    commit = _git(["commit-tree", tree, "-p", base, "-m", message], cwd=repo)
    _git(["update-ref", f"refs/heads/{BRANCH}", commit], cwd=repo)
    return Snapshot(commit, base, dirty)


def commit(repo: Path, changes: dict[str, str | None], message: str) -> str:
    """A commit on `main` that writes (text) or removes (None) files: what a user's push would do."""
    with tempfile.TemporaryDirectory(prefix="mmgitops-index-") as tmp:
        env = {"GIT_DIR": str(repo), "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        parent = _git(["rev-parse", BRANCH], env=env)
        _git(["read-tree", parent], env=env)
        for path, text in sorted(changes.items()):
            if text is None:  # mode 0 removes the entry; --force-remove would want a work tree
                _git(["update-index", "--index-info"], env=env, stdin=f"0 {'0' * 40}\t{path}\n")
            else:
                blob = _git(["hash-object", "-w", "--stdin"], env=env, stdin=text)
                _git(["update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"], env=env)
        tree = _git(["write-tree"], env=env)
        new = _git(["commit-tree", tree, "-p", parent, "-m", message], env=env)
        _git(["update-ref", f"refs/heads/{BRANCH}", new, parent], env=env)
    return new


def export(repo: Path, dest: Path) -> Path:
    """The files of `main`, as Argo CD's repo server sees them, in `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run([git_binary(), "--git-dir", str(repo), "archive", "--format=tar", BRANCH],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise ToolError(f"git archive {repo} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def start(served: Path, port: int, log: Path) -> int:
    """`git daemon` serving every repository under `served`, read-only, on 127.0.0.1:port; its PID."""
    proc = spawn([git_binary(), "daemon", "--listen=127.0.0.1", f"--port={port}", "--reuseaddr", "--export-all",
                  "--informative-errors", f"--base-path={served}", str(served)], log)
    return proc.pid


def url(port: int) -> str:
    return f"git://127.0.0.1:{port}/{REPO}"
