"""Which ModelMesh controller the local cluster runs: `real` (modelmesh-serving built from the pinned RHOAI source,
installed from its ODH overlay, its pods backed by lab/kubelet, runtime pods by the embedded engine) or `standin`
(lab/standins/modelmesh, the port)."""

from __future__ import annotations

import os

REAL, STANDIN = "real", "standin"
CONTROLLERS = (STANDIN, REAL)
CONTROLLER_ENV = "MMGITOPS_MODELMESH_CONTROLLER"  # how `local cluster up` tells the stand-ins process


def current() -> str:
    return os.environ.get(CONTROLLER_ENV) or STANDIN
