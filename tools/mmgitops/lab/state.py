"""Where the lab keeps the state of what it started (meshes, the local cluster): $MMGITOPS_STATE when set (a test
run's temporary directory), else the user's state directory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def state_root() -> Path:
    return Path(os.environ.get("MMGITOPS_STATE") or platformdirs.user_state_dir("mmgitops"))
