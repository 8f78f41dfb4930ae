"""ModelStatusInfo as ModelMesh builds it from a model record (ModelMesh.makeStatusInfo, ModelMeshApi.convertStatus).

Copy locations come from the record, so a copy on an instance that died without leaving stays listed
until the reaper prunes it. ModelMesh cannot tell a loaded copy from a loading one in the record: every
present copy is listed with copy status UNKNOWN (Status.NOT_CHECKED), failures as LOADING_FAILED,
newest first. The overall status comes from the live copies: LOADED, else LOADING, else LOADING_FAILED
when a load failed, else NOT_LOADED; a model with no live copy shows no present copies (the constant
SI_NOT_LOADED carries none), but still its failures.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from mmgitops.lab.mesh.registry import CopyRecord
from mmgitops.modelmesh import stubs

Status = stubs.mesh()[0].ModelStatusInfo


def status_info(copies: Mapping[str, CopyRecord], alive: Collection[str], extra_error: str = "") -> Any:
    """copies: instance id -> copy record, from the registry; alive: the instance table's ids."""
    live = {c.status for i, c in copies.items() if i in alive}
    failed = {i: c for i, c in copies.items() if c.status == "LOADING_FAILED"}
    present = {i: c for i, c in copies.items() if c.status != "LOADING_FAILED"}
    if "LOADED" in live:
        overall = Status.LOADED
    elif "LOADING" in live:
        overall = Status.LOADING
    elif failed or extra_error:
        overall = Status.LOADING_FAILED
    else:
        overall = Status.NOT_LOADED
    listed = [(i, c, Status.UNKNOWN) for i, c in present.items()] if overall != Status.NOT_LOADED else []
    listed += [(i, c, Status.LOADING_FAILED) for i, c in failed.items()]
    listed.sort(key=lambda item: -item[1].time)
    errors = [c.error for _, c in sorted(failed.items(), key=lambda kv: -kv[1].time) if c.error]
    if extra_error and not failed:
        errors = [extra_error]
    return Status(status=overall, errors=errors,
                  modelCopyInfos=[Status.ModelCopyInfo(location=i, copyStatus=s, time=c.time) for i, c, s in listed])
