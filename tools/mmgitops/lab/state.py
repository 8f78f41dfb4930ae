"""Where the lab keeps the state of what it started (meshes, the local cluster): $MMGITOPS_STATE when set (a test
run's temporary directory), else the user's state directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import platformdirs

from mmgitops.errors import ToolError


def state_root() -> Path:
    return Path(os.environ.get("MMGITOPS_STATE") or platformdirs.user_state_dir("mmgitops"))


def read_json(path: Path) -> dict[str, Any] | None:
    """A state file the lab wrote; None when there is none. One that is not what the lab writes is one line, and is
    left alone: the processes it lists may still run."""
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        state = error
    if not isinstance(state, dict):
        why = f": {state}" if isinstance(state, Exception) else ""
        raise ToolError(f"{path}: not the state file mmgitops writes{why}; the processes it listed may still run: "
                        f"stop them, then remove the file")
    return state
