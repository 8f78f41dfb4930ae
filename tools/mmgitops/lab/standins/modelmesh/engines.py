"""Which local-mesh engine backs the runtime pods: `embedded` (mmgitops.lab.mesh instances, the default) or
`reference` (the real ModelMesh data plane built from sources, tools/mmgitops/reference)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

EMBEDDED, REFERENCE = "embedded", "reference"
ENGINES = (EMBEDDED, REFERENCE)
ENGINE_ENV = "MMGITOPS_MODELMESH_ENGINE"  # how `local cluster up` tells the stand-in process


def make_fleet(engine: str, root: Path) -> Any:
    """A fleet (instances, start, poll, stop, stop_all, root) of the engine's pod processes."""
    if engine == EMBEDDED:
        from mmgitops.lab.standins.modelmesh.fleet import Fleet

        return Fleet(root)
    if engine == REFERENCE:
        from mmgitops.lab.standins.modelmesh.reffleet import ReferenceFleet

        return ReferenceFleet(root)
    raise ValueError(f"unknown mesh engine {engine!r}: choose one of {', '.join(ENGINES)}")
