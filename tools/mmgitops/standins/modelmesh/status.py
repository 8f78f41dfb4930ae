"""An InferenceService's status, as modelmesh-serving writes it, from what the mesh says of its vmodel.

Field names and enum values are the InferenceService CRD's (`status.modelStatus`, `components.predictor`);
the tests validate what this module builds against the CRD's status schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmgitops.mesh.states import ISVC_STATE, ISVC_TRANSITION
from mmgitops.standins.kube import now

GRPC_PORT, REST_PORT = 8033, 8008
SERVICE = "modelmesh-serving"


@dataclass(frozen=True)
class Copy:
    location: str
    status: str  # the mesh's ModelStatus name: LOADED, LOADING, LOADING_FAILED, ...


@dataclass(frozen=True)
class MeshView:
    """A vmodel as getVModelStatus reports it, by enum names."""

    vmodel: str  # DEFINED, TRANSITIONING, TRANSITION_FAILED, NOT_FOUND
    model_id: str  # the target (concrete) model id
    active: str
    target: str
    copies: list[Copy] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def urls(namespace: str) -> dict[str, Any]:
    grpc_url = f"grpc://{SERVICE}.{namespace}:{GRPC_PORT}"
    return {"url": grpc_url, "address": {"url": grpc_url},
            "components": {"predictor": {"grpcUrl": grpc_url, "restUrl": f"http://{SERVICE}.{namespace}:{REST_PORT}",
                                         "url": grpc_url}}}


def _conditions(ready: bool, reason: str = "", message: str = "") -> list[dict[str, Any]]:
    def one(kind: str) -> dict[str, Any]:
        found = {"type": kind, "status": "True" if ready else "False", "lastTransitionTime": now()}
        if not ready:
            found.update(reason=reason or "ModelNotReady", message=message)
        return found
    return [one("PredictorReady"), one("Ready")]


def pending(namespace: str, generation: int) -> dict[str, Any]:
    """Registered with no mesh yet: the runtime's pods are starting (or scaling up from zero)."""
    return {"deploymentMode": "ModelMesh", "observedGeneration": generation, **urls(namespace),
            "modelStatus": {"transitionStatus": "InProgress",
                            "states": {"activeModelState": "Pending", "targetModelState": ""},
                            "copies": {"failedCopies": 0}},
            "conditions": _conditions(False, "ModelNotReady", "Waiting for runtime Pod to become available")}


def invalid(namespace: str, generation: int, reason: str, message: str) -> dict[str, Any]:
    """No runtime can serve the model: nothing is registered, and the spec must change."""
    return {"deploymentMode": "ModelMesh", "observedGeneration": generation, **urls(namespace),
            "modelStatus": {"transitionStatus": "InvalidSpec",
                            "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
                            "copies": {"failedCopies": 0},
                            "lastFailureInfo": {"reason": reason, "message": message}},
            "conditions": _conditions(False, reason, message)}


def from_mesh(namespace: str, generation: int, view: MeshView, was_ready: bool) -> dict[str, Any]:
    active, target = ISVC_STATE.get(view.active, ""), ISVC_STATE.get(view.target, "")
    loaded = sum(c.status == "LOADED" for c in view.copies)
    failed = [c for c in view.copies if c.status == "LOADING_FAILED"]
    model: dict[str, Any] = {
        "transitionStatus": ISVC_TRANSITION.get(view.vmodel, "InProgress"),
        "states": {"activeModelState": active, "targetModelState": "" if view.vmodel == "DEFINED" else target},
        "copies": {"failedCopies": len(failed), "totalCopies": loaded},
    }
    if "FailedToLoad" in (active, target):
        model["lastFailureInfo"] = {"reason": "ModelLoadFailed", "modelRevisionName": view.model_id,
                                    "message": view.errors[0] if view.errors else "Model load failed",
                                    "time": now(), **({"location": failed[0].location} if failed else {})}
    # Ready stays True while Standby (and while a model that was ready reloads): it is servable on request.
    ready = active in ("Loaded", "Standby") or (active == "Loading" and was_ready)
    return {"deploymentMode": "ModelMesh", "observedGeneration": generation, **urls(namespace), "modelStatus": model,
            "conditions": _conditions(ready, "ModelLoadFailed" if active == "FailedToLoad" else "ModelNotReady",
                                      model.get("lastFailureInfo", {}).get("message", ""))}


def same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Equal but for timestamps: an unchanged status is not written again (it would bump resourceVersion)."""
    def strip(status: dict[str, Any]) -> Any:
        model = dict(status.get("modelStatus") or {})
        if "lastFailureInfo" in model:
            model["lastFailureInfo"] = {k: v for k, v in model["lastFailureInfo"].items() if k != "time"}
        return ({**status, "modelStatus": model,
                 "conditions": [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                for c in status.get("conditions") or []]})
    return strip(old) == strip(new)
