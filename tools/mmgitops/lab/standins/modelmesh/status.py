"""An InferenceService's status, computed as modelmesh-serving computes it from what the mesh says of its vmodel.

The controller works on a Predictor status (pkg/predictor_source/inferenceservice_registry.go Get reads it
from the InferenceService, UpdateStatus writes it back as a whole new status) and updates it from the
VModelStatusInfo of setVModel (controllers/predictor_controller.go updatePredictorStatusFromVModel,
decodeModelState, countModelCopyStates). Field names and enum values are the InferenceService CRD's; the
tests validate what this module builds against the CRD's status schema.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from mmgitops.lab.mesh.constraints import NO_INSTANCE_MESSAGE, NO_RUNTIME_LABEL
from mmgitops.lab.standins.kube import now as now_text
from mmgitops.lab.standins.modelmesh.config import SERVICE
from mmgitops.modelmesh.defaults import GRPC_PORT, REST_PORT
from mmgitops.modelmesh.states import ISVC_STATE, ISVC_TRANSITION

# The mesh says which labels a type without a home requires at the end of its message; the controller tells the
# cases apart by them.
NO_RUNTIME_SUFFIX = f"[{NO_RUNTIME_LABEL}]"
KEEP_FAILURE_TIME_S = 20  # a failure not tied to a copy keeps its time this long, against reconcile loops
COUNTED = ("", "ModelLoadFailed")  # failure reasons under which the copies are counted


@dataclass(frozen=True)
class CopyInfo:
    location: str
    status: str  # ModelStatus name: UNKNOWN for a present copy (ModelMesh cannot tell), LOADING_FAILED, ...
    time_ms: int = 0


@dataclass(frozen=True)
class ModelView:
    """A ModelStatusInfo, by enum names."""

    status: str
    errors: tuple[str, ...] = ()
    copies: tuple[CopyInfo, ...] = ()


@dataclass(frozen=True)
class VModelView:
    """A VModelStatusInfo; a model status the message does not carry is None (nil in Go)."""

    status: str  # DEFINED, TRANSITIONING, TRANSITION_FAILED, NOT_FOUND
    active_id: str
    target_id: str
    active: ModelView | None
    target: ModelView | None = None


@dataclass
class FailureInfo:
    reason: str
    message: str = ""
    model_id: str = ""
    location: str = ""
    time: str = ""  # RFC 3339, seconds, as metav1.Time marshals


@dataclass
class PredictorStatus:
    transition: str = ""
    active: str = "Pending"
    target: str = ""
    failed_copies: int = 0
    total_copies: int = 0
    failure: FailureInfo | None = None
    available: bool = False
    grpc_endpoint: str = ""
    http_endpoint: str = ""

    def waiting_for_runtime(self) -> bool:
        return self.failure is not None and self.failure.reason == "RuntimeUnhealthy"


def endpoints(namespace: str) -> tuple[str, str]:
    """MMService.InferenceEndpoints: the namespace's Service, gRPC and REST."""
    return f"grpc://{SERVICE}.{namespace}:{GRPC_PORT}", f"http://{SERVICE}.{namespace}:{REST_PORT}"


# ---- InferenceService <-> Predictor status (inferenceservice_registry.go) ---------------------------------
def from_isvc(status: dict[str, Any] | None) -> PredictorStatus:
    """InferenceServiceRegistry.Get: the Predictor status the controller starts a reconcile from."""
    status = status or {}
    model = status.get("modelStatus") or {}
    copies, states = model.get("copies") or {}, model.get("states") or {}
    found = PredictorStatus(
        transition=str(model.get("transitionStatus") or ""),
        active=str(states.get("activeModelState") or "") or "Pending",
        target=str(states.get("targetModelState") or ""),
        failed_copies=int(copies.get("failedCopies") or 0), total_copies=int(copies.get("totalCopies") or 0),
        available=any(c.get("type") == "PredictorReady" and c.get("status") == "True"
                      for c in status.get("conditions") or []))
    info = model.get("lastFailureInfo")
    if info:
        found.failure = FailureInfo(reason=str(info.get("reason", "")), message=str(info.get("message", "")),
                                    model_id=str(info.get("modelRevisionName", "")),
                                    location=str(info.get("location", "")), time=str(info.get("time", "")))
    predictor = (status.get("components") or {}).get("predictor") or {}
    found.grpc_endpoint, found.http_endpoint = str(predictor.get("grpcUrl", "")), str(predictor.get("restUrl", ""))
    return found


def to_isvc(found: PredictorStatus, transition_time: str = "") -> dict[str, Any]:
    """InferenceServiceRegistry.UpdateStatus: the whole new status (it replaces the old one). URLs only while
    available; PredictorReady and Ready as knative's living condition set marks them."""
    model: dict[str, Any] = {
        "transitionStatus": found.transition,
        "states": {"activeModelState": found.active, **({"targetModelState": found.target} if found.target else {})},
        "copies": {"failedCopies": found.failed_copies,
                   **({"totalCopies": found.total_copies} if found.total_copies else {})},
    }
    if found.failure is not None:
        f = found.failure
        info = {"location": f.location, "reason": f.reason, "message": f.message, "modelRevisionName": f.model_id,
                "time": f.time}
        model["lastFailureInfo"] = {k: v for k, v in info.items() if v}  # every field is omitempty
    out: dict[str, Any] = {"modelStatus": model}
    if found.available:
        predictor = {k: v for k, v in (("url", found.grpc_endpoint), ("grpcUrl", found.grpc_endpoint),
                                       ("restUrl", found.http_endpoint)) if v}
        if found.grpc_endpoint:
            out["url"] = found.grpc_endpoint
        out["components"] = {"predictor": predictor}
    when = transition_time or now_text()
    out["conditions"] = [{"type": kind, "status": "True" if found.available else "False", "lastTransitionTime": when}
                         for kind in ("PredictorReady", "Ready")]
    return out


# ---- the reconcile (predictor_controller.go) --------------------------------------------------------------
def load_now(found: PredictorStatus) -> bool:
    """ReconcilePredictor's loadNow: new, failed, transitioning, or loading while waiting for a runtime pod."""
    return (found.active in ("Pending", "FailedToLoad") or found.target != ""
            or (found.active == "Loading" and found.waiting_for_runtime()))


def no_addresses(found: PredictorStatus, model_id: str) -> None:
    """setVModel found no pod behind the Service: only the failure changes (no time, as the controller sets it)."""
    found.failure = FailureInfo("RuntimeUnhealthy", "Waiting for runtime Pod to become available", model_id)


def already_exists(found: PredictorStatus) -> None:
    found.failure = FailureInfo("InvalidPredictorSpec",
                                "Predictor already exists with the same name from a different source")


def decode(model: ModelView | None) -> tuple[str, str, str]:
    """decodeModelState: (state, failure reason, message)."""
    if model is None:
        return "Pending", "", ""  # vmodel not found
    state = ISVC_STATE.get(model.status, "")
    reason, message = ("ModelLoadFailed", model.errors[0]) if model.errors else ("", "")
    if state != "FailedToLoad":
        return state, reason, message
    if not message.startswith(NO_INSTANCE_MESSAGE):
        return "FailedToLoad", "ModelLoadFailed", message
    if not message.endswith(NO_RUNTIME_SUFFIX):
        return "Loading", "RuntimeUnhealthy", "Waiting for supporting runtime Pod to become available"
    if message.removeprefix(NO_INSTANCE_MESSAGE).startswith("rt:"):
        return "FailedToLoad", "RuntimeNotRecognized", "Specified runtime name not recognized"
    return "FailedToLoad", "NoSupportingRuntime", "No ServingRuntime supports specified model type and/or protocol"


def _count(model: ModelView | None) -> tuple[int, int]:
    """countModelCopyStates: (failed, total); every listed copy counts in the total, whatever its state."""
    if model is None:
        return 0, 0
    return sum(c.status == "LOADING_FAILED" for c in model.copies), len(model.copies)


def update_from_vmodel(found: PredictorStatus, view: VModelView, urls: tuple[str, str], now_s: float) -> None:
    """updatePredictorStatusFromVModel (with transition and failure), in place."""
    transition = ISVC_TRANSITION.get(view.status, "")
    active, active_reason, active_message = decode(view.active)
    if active:  # "" (UNKNOWN, NOT_FOUND): the controller logs it and keeps the state it had
        found.active = active
    failed = total = 0
    if active_reason in COUNTED:
        failed, total = _count(view.active)
    target_model: ModelView | None
    if view.active_id == view.target_id:
        target_model, target_reason, target_message = view.active, active_reason, active_message
        found.target = ""  # shown only while the target differs from the active model
    else:
        target_model, target_reason, target_message = view.target, "", ""
        if target_model is not None:
            found.target, target_reason, target_message = decode(target_model)
            if target_reason in COUNTED:
                more_failed, more_total = _count(target_model)
                failed, total = failed + more_failed, total + more_total
    if transition == "BlockedByFailedLoad" and target_model is not None and target_model.status == "LOADING":
        transition = "InProgress"  # the "nowhere to load this type" failure turned back into Loading
    found.transition = transition
    info: FailureInfo | None = None
    if target_model is not None and target_model.status != "LOADED":
        if not target_reason:
            if found.waiting_for_runtime():
                info = found.failure  # back to loading after a wait: the last failure stays
        else:
            info = FailureInfo(target_reason, target_message, view.target_id)
            if target_reason == "ModelLoadFailed":
                first = next((c for c in target_model.copies if c.status == "LOADING_FAILED"), None)
                if first is not None:
                    info.location = first.location
                    info.time = rfc3339(first.time_ms / 1000) if first.time_ms else ""
            else:
                last = found.failure
                if last is None or not last.time or now_s - parse_time(last.time) > KEEP_FAILURE_TIME_S:
                    info.time = rfc3339(now_s)
                else:
                    info.time = last.time
    found.failure = info
    found.available = found.active not in ("", "FailedToLoad") and not found.waiting_for_runtime()
    found.grpc_endpoint, found.http_endpoint = urls
    found.failed_copies, found.total_copies = failed, total


def rfc3339(seconds: float) -> str:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return 0.0


# ---- writing it ---------------------------------------------------------------------------------------------
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


def replacing(old: Any, new: Any) -> Any:
    """A JSON merge patch that turns `old` into `new`: what `new` leaves out is removed (set to null), as the
    controller's whole-status update does."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch = {key: replacing(old.get(key), value) for key, value in new.items()}
    patch.update({key: None for key in old if key not in new})
    return patch
