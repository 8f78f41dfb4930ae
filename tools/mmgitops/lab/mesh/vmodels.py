"""Virtual models, by ModelMesh's rules (VModelManager), apart from the gRPC layer that carries the calls.

A vmodel is an alias with an owner, an active model (the one requests reach) and a target model (the one it
moves to). setVModel checks the call against the current record, registers the target when the call describes
it, points the vmodel at it and loads it when asked to. The target becomes active once a copy of it is loaded
(`promote`); a replaced model that was created for the vmodel (autoDeleteTargetModel) is then deleted.

Promotion happens where state changes: when a load completes (`on_loaded`, from the instance that loaded),
after setVModel's own load, and in the leader's periodic housekeeping (`promote_loaded`) for whatever those
missed (a load that completed on an instance that died before it promoted). Reading a vmodel never writes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import grpc

from mmgitops.lab.mesh.errors import MeshError
from mmgitops.lab.mesh.registry import ModelRecord, Registry, VModelRecord, initial_last_used

# VModelStatusInfo.VModelStatus names.
DEFINED, TRANSITIONING, TRANSITION_FAILED = "DEFINED", "TRANSITIONING", "TRANSITION_FAILED"


@dataclass(frozen=True)
class SetVModel:
    """What a setVModel call asks (SetVModelRequest), without the protocol."""

    vmodel_id: str
    target_id: str
    owner: str = ""
    model_type: str = ""  # with path and key: the target's registration; "" when the call names a registered model
    model_path: str = ""
    model_key: str = ""
    auto_delete: bool = False
    load_now: bool = False
    update_only: bool = False
    force: bool = False
    expected_target: str = ""


def resolve(registry: Registry, vmodel_id: str, not_found: str = "") -> str:
    """The model a request for the vmodel reaches: its active one, from this instance's view
    (VModelManager.resolveVModelId). `not_found`: the model a first attempt found gone (a transition has just
    deleted it); while the view still names it, a strong read's active model, else that read's target."""
    vmodel = registry.vmodel(vmodel_id) or registry.read_vmodel(vmodel_id)
    if vmodel is None:
        raise MeshError(grpc.StatusCode.NOT_FOUND, "vmodel not found")
    if not not_found or vmodel.active != not_found:
        return vmodel.active
    vmodel = registry.read_vmodel(vmodel_id) or vmodel
    for model_id in (vmodel.active, vmodel.target):
        if model_id != not_found:
            return model_id
    raise MeshError(grpc.StatusCode.INTERNAL, f"Target model {not_found} of vmodel {vmodel_id} not found")


def read(registry: Registry, vmodel_id: str, owner: str = "") -> VModelRecord | None:
    """The vmodel as etcd holds it now; None when missing or owned by another owner than a given one."""
    vmodel = registry.read_vmodel(vmodel_id)
    return None if vmodel is None or (owner and vmodel.owner != owner) else vmodel


def transition(vmodel: VModelRecord, target_status: str) -> str:
    """The vmodel's state from its target model's overall status (a ModelStatusInfo.ModelStatus name)."""
    if vmodel.active == vmodel.target:
        return DEFINED
    return TRANSITION_FAILED if target_status == "LOADING_FAILED" else TRANSITIONING


def set_vmodel(registry: Registry, call: SetVModel, now: int, load: Callable[[str, int], str],
               alive: Callable[[], Collection[str]]) -> str:
    """Check the call, register its target, write the vmodel, and load the target when the call asks for it or
    the vmodel is moving; load(model_id, last_used) returns the failure of a load that failed, else "". Returns
    that failure. MeshError when the call is refused."""
    vmodel = _write(registry, call, now)
    if not (call.load_now or vmodel.active != vmodel.target):
        return ""
    target = registry.read_model(call.target_id)
    error = load(call.target_id, target.last_used if target else initial_last_used(0, True, now))
    live = alive()
    if any(c.status == "LOADED" and i in live for i, c in registry.read_copies(call.target_id).items()):
        promote(registry, call.vmodel_id, call.target_id)
    return error


def _write(registry: Registry, call: SetVModel, now: int) -> VModelRecord:
    if not call.vmodel_id or not call.target_id:
        raise MeshError(grpc.StatusCode.INVALID_ARGUMENT, "vModelId and targetModelId must be set")
    current = registry.read_vmodel(call.vmodel_id)
    if current is None and call.update_only:
        raise MeshError(grpc.StatusCode.NOT_FOUND, f"vmodel {call.vmodel_id} not found")
    if current is not None and call.owner and current.owner != call.owner:
        raise MeshError(grpc.StatusCode.ALREADY_EXISTS, f"vmodel {call.vmodel_id} exists with owner {current.owner!r}")
    if call.expected_target and (current.target if current else call.target_id) != call.expected_target:
        raise MeshError(grpc.StatusCode.FAILED_PRECONDITION,
                        f"vmodel {call.vmodel_id} target is not {call.expected_target}")
    if call.model_type:
        registry.create_model(call.target_id, ModelRecord(call.model_type, call.model_path, call.model_key,
                                                          initial_last_used(0, call.load_now, now), call.auto_delete))
    elif registry.read_model(call.target_id) is None:
        raise MeshError(grpc.StatusCode.NOT_FOUND, f"target model {call.target_id} not found")
    if current is None or call.force:
        vmodel = VModelRecord(call.target_id, call.target_id, call.owner)
    else:
        vmodel = VModelRecord(current.active, call.target_id, current.owner)
    registry.put_vmodel(call.vmodel_id, vmodel)
    return vmodel


def promote(registry: Registry, vmodel_id: str, target_id: str) -> None:
    """Make a loaded target active, if the vmodel (as etcd holds it now) still moves to it; a replaced model
    created for the vmodel is deleted."""
    vmodel = registry.read_vmodel(vmodel_id)
    if vmodel is None or vmodel.target != target_id or vmodel.active == target_id:
        return
    previous = registry.read_model(vmodel.active)
    registry.put_vmodel(vmodel_id, VModelRecord(target_id, target_id, vmodel.owner))
    if previous and previous.auto_delete:
        registry.delete_model(vmodel.active)


def on_loaded(registry: Registry, model_id: str) -> None:
    """A copy of the model has just loaded: the vmodels moving to it move."""
    for vmodel_id in registry.vmodels_where(lambda v: v.target == model_id and v.active != model_id):
        promote(registry, vmodel_id, model_id)


def promote_loaded(registry: Registry) -> None:
    """Every vmodel whose target has a loaded copy moves to it (the leader's periodic catch-up)."""
    view = registry.snapshot()
    for vmodel_id, vmodel in view.vmodels.items():
        if vmodel.active != vmodel.target and any(c.status == "LOADED"
                                                  for c in view.copies.get(vmodel.target, {}).values()):
            promote(registry, vmodel_id, vmodel.target)


def delete(registry: Registry, vmodel_id: str, owner: str = "") -> None:
    """Delete the vmodel (nothing when missing or another owner's), and the models created for it that no other
    vmodel uses."""
    vmodel = read(registry, vmodel_id, owner)
    if vmodel is None:
        return
    registry.delete_vmodel(vmodel_id)
    still_used = {m for v in registry.vmodels_where(lambda _: True).values() for m in (v.active, v.target)}
    for model_id in {vmodel.active, vmodel.target} - still_used:
        record = registry.read_model(model_id)
        if record and record.auto_delete:
            registry.delete_model(model_id)
