"""What every command shares: exit codes, the stderr console, the checkout's root, kustomize."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from mmgitops.gitops import render

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
err = Console(stderr=True)


# Off a terminal, a step whose text only changed its figures is printed again after this many seconds.
REPEAT_S = 30.0


@contextmanager
def progress(title: str) -> Iterator[Callable[[str], None]]:
    """What a long step is doing: a live status line on a terminal; elsewhere (a CI log, a pipe), where a status line
    shows nothing, one line per step with the seconds since the start, so that no build is silent."""
    if err.is_terminal:
        with err.status(title) as status:
            yield lambda text: status.update(text)
        return
    started = time.monotonic()
    last = {"step": title, "at": -REPEAT_S}

    def line(text: str) -> None:
        # The title only with the first step: a command refused at once says its one line and nothing else.
        if last["step"] == title:
            err.print(f"[{0:4.0f} s] {title}", markup=False, highlight=False, soft_wrap=True)
        step, now = re.sub(r"\d+(\.\d+)?", "#", text), time.monotonic()
        if step != last["step"] or now - last["at"] >= REPEAT_S:
            err.print(f"[{now - started:4.0f} s] {text}", markup=False, highlight=False, soft_wrap=True)
            last.update(step=step, at=now)

    yield line


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
