"""The janitor forgets this instance's load failures after ModelMesh's expiry, and only its own."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from mmgitops.lab.mesh import tasks
from mmgitops.lab.mesh.faults import Faults
from mmgitops.lab.mesh.instance import Instance, Settings
from mmgitops.lab.mesh.metrics import MeshMetrics
from mmgitops.lab.mesh.peers import Peers
from mmgitops.lab.mesh.registry import CopyRecord, View

pytestmark = pytest.mark.unit
T0 = 1_000_000_000


class FakeRegistry:
    """The copies table alone, as the janitor reads and edits it."""

    def __init__(self, copies: dict[str, dict[str, CopyRecord]]) -> None:
        self.copies = copies

    def lease(self, ttl: int) -> object:
        return object()

    def on_change(self, listener: Any) -> None:
        pass

    def snapshot(self) -> View:
        return View(copies={m: dict(c) for m, c in self.copies.items()})

    def delete_copy(self, model_id: str, instance_id: str) -> None:
        self.copies[model_id].pop(instance_id)


def instance_at(now: int, registry: FakeRegistry) -> Instance:
    return Instance(Settings("mm-0", "127.0.0.1:1", 64 * 2**20), registry,  # type: ignore[arg-type]
                    grpc.insecure_channel("127.0.0.1:1"), Peers(), MeshMetrics(), Faults(), clock=lambda: now)


def test_a_failure_older_than_the_expiry_is_dropped_and_a_younger_one_kept():
    old = T0 - tasks.LOAD_FAILURE_EXPIRY_MS - 1
    registry = FakeRegistry({
        "old": {"mm-0": CopyRecord("LOADING_FAILED", old, "boom"), "mm-1": CopyRecord("LOADING_FAILED", old)},
        "young": {"mm-0": CopyRecord("LOADING_FAILED", T0 - 60_000, "boom")},
        "loaded": {"mm-0": CopyRecord("LOADED", old)},
    })
    tasks.expire_failures(instance_at(T0, registry))
    # mm-1's failure is mm-1's janitor's to expire (or the reaper's, when mm-1 is gone).
    assert registry.copies == {"old": {"mm-1": CopyRecord("LOADING_FAILED", old)},
                               "young": {"mm-0": CopyRecord("LOADING_FAILED", T0 - 60_000, "boom")},
                               "loaded": {"mm-0": CopyRecord("LOADED", old)}}


def test_a_failure_whose_model_is_loading_again_here_is_left_to_the_load():
    old = T0 - tasks.LOAD_FAILURE_EXPIRY_MS - 1
    registry = FakeRegistry({"m": {"mm-0": CopyRecord("LOADING_FAILED", old, "boom")}})
    instance = instance_at(T0, registry)
    instance.loading["m"] = object()  # type: ignore[assignment]
    tasks.expire_failures(instance)
    assert registry.copies["m"] == {"mm-0": CopyRecord("LOADING_FAILED", old, "boom")}
