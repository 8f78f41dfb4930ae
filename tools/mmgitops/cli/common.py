"""What every command shares: exit codes, the stderr console, the checkout's root, kustomize."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rich.console import Console

from mmgitops.gitops import render

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
err = Console(stderr=True)


def repo_root() -> Path:
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    return Path(out.stdout.strip()) if out.returncode == 0 else Path.cwd()


def kustomize() -> list[str]:
    """The kubectl command that renders with kustomize v5, checked before any rendering starts."""
    command = render.find_kubectl()
    render.check_kustomize(command)
    return command


def print_stopped(stopped: list[str], what: str) -> int:
    print("\n".join(f"stopped {s}" for s in stopped) if stopped else f"no {what} was running")
    return EXIT_OK
