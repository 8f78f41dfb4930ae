"""ModelMesh controller stand-in: runtime Deployments on the local cluster, a local mesh instance behind each
runtime pod, and InferenceServices registered with the mesh and given the status the real controller writes."""

from __future__ import annotations

import json
from pathlib import Path

FLEET_FILE = "fleet.json"  # name -> PID of every process the stand-in started (fleet.py keeps it)


def recorded(root: Path) -> dict[str, int]:
    """The processes a (possibly killed) stand-in recorded: name -> PID, each leading its process group."""
    try:
        return {str(k): int(v) for k, v in json.loads((root / FLEET_FILE).read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        return {}
