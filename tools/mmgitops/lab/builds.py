"""What the lab still has to build on this machine before it can start, and how long that takes: the first lines of
`mmgitops demo` and `make test` say it, so nobody waits minutes without knowing why.

Each build is cached by version and runs once (lab/binaries.py, lab/argocd, lab/controller, lab/reference); its time
here is recorded in binaries.BUILD_TIMES. A build never run here is shown with TYPICAL_S.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mmgitops.errors import ToolError
from mmgitops.lab import binaries

# Seconds each build took on a 2-core machine with empty Go, Maven and mmgitops caches, one after another as `local
# build all` runs them (2026-12-07, 687 s in all; later builds reuse the Go modules earlier ones fetched).
TYPICAL_S = {
    "kubernetes": 225, "etcd": 21, "kwok": 100, "argo-cd": 153, "kustomize": 11, "controller": 109,
    "argo-cd-luahealth": 7, "modelmesh": 15, "rest-proxy": 13, "modelmesh-runtime-adapter": 31,
}


@dataclass(frozen=True)
class Pending:
    name: str
    seconds: float
    here: bool  # the last build on this machine, not the typical figure

    def text(self) -> str:
        minutes = f"{self.seconds / 60:.0f} min" if self.seconds >= 90 else f"{self.seconds:.0f} s"
        return f"{self.name} ({minutes} {'last time here' if self.here else 'typically'})"


def _argocd() -> dict[str, Callable[[], bool]]:
    from mmgitops.lab.argocd import build as argocd

    cd = argocd.planned()
    return {"argo-cd": lambda: all(p.exists() for p in cd.all()[:-1]), "kustomize": cd.kustomize.is_file}


def _cluster() -> dict[str, Callable[[], bool]]:
    from mmgitops.lab.controller import build as controller

    kube = binaries.planned()
    return {
        "kubernetes": lambda: all(p.is_file() for p in (kube.kube_apiserver, kube.kube_controller_manager,
                                                         kube.kube_scheduler)),
        "etcd": kube.etcd.is_file,
        "kwok": lambda: kube.kwok.is_file() and kube.kwokctl.is_file(),
        **_argocd(),
        "controller": lambda: controller.finished(controller.planned()),
    }


def _reference() -> dict[str, Callable[[], bool]]:
    from mmgitops.lab.reference import build as reference

    try:
        out = reference.planned(reference.find_sources(None))
    except ToolError:
        return {}  # no sources: nothing will be built (what needs them says so, or is skipped)
    return {"modelmesh": (out["modelmesh"] / "start.sh").is_file,
            "rest-proxy": (out["rest-proxy"] / "proxy").is_file,
            "modelmesh-runtime-adapter": (out["modelmesh-runtime-adapter"] / "model-mesh-mlserver-adapter").is_file}


def _luahealth() -> dict[str, Callable[[], bool]]:
    from mmgitops.lab.argocd import luahealth

    return {luahealth.BUILD_NAME: lambda: luahealth.current(luahealth.planned())}


def pending(*uses: str) -> list[Pending]:
    """The builds that `uses` (cluster, argocd, reference, luahealth) need and the cache lacks, in the order they
    run."""
    kinds = {"cluster": _cluster, "argocd": _argocd, "reference": _reference, "luahealth": _luahealth}
    out = []
    for use in uses:
        for name, cached in kinds[use]().items():
            if not cached():
                last = binaries.last_build_s(name)
                out.append(Pending(name, last if last is not None else TYPICAL_S[name], last is not None))
    return out


def summary(todo: list[Pending]) -> str:
    """One line: what will be built first and about how long it takes, or '' when everything is cached."""
    if not todo:
        return ""
    total = sum(p.seconds for p in todo)
    return (f"first it builds, once (cached under {binaries.cache_root()}): {', '.join(p.text() for p in todo)}; "
            f"about {total / 60:.0f} min in all")
