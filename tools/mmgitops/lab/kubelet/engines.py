"""Which local-mesh engine plays the runtime pods the controller makes: `embedded` (one lab/mesh instance per pod,
runtimepod.py, the default) or `reference` (the real ModelMesh data plane built from the pinned sources, refpod.py)."""

from __future__ import annotations

EMBEDDED, REFERENCE = "embedded", "reference"
ENGINES = (EMBEDDED, REFERENCE)
ENGINE_ENV = "MMGITOPS_MODELMESH_ENGINE"  # how `local cluster up` tells the stand-ins process (and its kubelet)
