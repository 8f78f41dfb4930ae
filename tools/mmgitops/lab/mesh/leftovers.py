"""Local meshes that interrupted suite runs left: found by name in the state dir and in pytest's temporary dirs,
stopped and removed by `mmgitops conform cleanup`. A mesh a running suite still uses, or of any other name, is kept.
"""

from __future__ import annotations

import getpass
import os
import re
import tempfile
from pathlib import Path

from mmgitops import procs
from mmgitops.lab.state import state_root

# The suite names its embedded meshes conf-, gpu- and res-<6 hex of the run>; a mesh of any other name is a
# user's and is never touched.
LEFTOVER = re.compile(r"mesh-((?:conf|gpu|res)-[0-9a-f]{6})")


def _owner(pytest_dir: Path) -> int | None:
    """The live pytest process that owns a numbered pytest tmp dir (pytest keeps its PID in .lock), if any."""
    try:
        pid = int((pytest_dir / ".lock").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if procs.alive(pid) else None


def _state_roots() -> list[tuple[Path, int | None]]:
    """Where embedded meshes keep their state, with the PID of a run still using it: the mmgitops state dir,
    and pytest's temporary directories (the suite gives each run's mesh a fresh one; pytest keeps three)."""
    roots: list[tuple[Path, int | None]] = [(state_root(), None)]
    temp = Path(os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"
    if temp.is_dir():
        # pytest-current and *current are symlinks to directories listed anyway.
        roots += [(path, _owner(path.parent)) for path in sorted(temp.glob("pytest-*/*-mesh*"))
                  if not path.is_symlink() and not path.parent.is_symlink()]
    return roots


def leftovers() -> tuple[list[tuple[str, Path]], list[str]]:
    """Meshes to remove, and lines about the ones a running suite still uses (never touched)."""
    found, busy = [], []
    for root, owner in _state_roots():
        if not root.is_dir():
            continue
        for path in sorted(root.iterdir()):
            if not path.is_dir() or path.is_symlink() or not (match := LEFTOVER.fullmatch(path.name)):
                continue
            if owner is None:
                found.append((match[1], path))
            else:
                busy.append(f"kept local mesh {match[1]}: a running suite uses it (pytest pid {owner})")
    return found, busy


def cleanup() -> tuple[list[str], list[str]]:
    """Stop every embedded mesh an earlier run left and remove its state: (removed, kept), a line per mesh."""
    removed = []
    found, busy = leftovers()
    for mesh, path in found:
        from mmgitops.lab.mesh import control  # grpc and MLServer: seconds to import, so only when needed
        stopped = control.down(mesh, path.parent)
        removed.append(f"removed local mesh {mesh} ({path})" + (f": stopped {', '.join(stopped)}" if stopped else ""))
    return removed, busy
