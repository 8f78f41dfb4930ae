"""Bringing a runtime of the run up from zero pods, and reading what the controller writes meanwhile.

modelmesh-serving keeps a ServingRuntime that no InferenceService uses at zero replicas (scaleToZero, on by
default: servingruntime_controller.go determineReplicasAndRequeueDuration) and scales it up once one does. The
target's first InferenceService is that one; its statuses until it is Loaded are kept as they came.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mmgitops.conformance.cluster.platform import get
from mmgitops.conformance.target import LOADED, ScaleUp, ServiceStatus
from mmgitops.errors import ToolError

POLL_S = 0.5


def service_status(isvc: dict[str, Any]) -> ServiceStatus:
    model = ("status", "modelStatus")
    return ServiceStatus(str(get(isvc, *model, "states", "activeModelState")),
                         str(get(isvc, *model, "states", "targetModelState")),
                         str(get(isvc, *model, "transitionStatus")),
                         str(get(isvc, *model, "lastFailureInfo", "reason")),
                         str(get(isvc, *model, "lastFailureInfo", "message")))


def watch(status: Callable[[], ServiceStatus | None], pods_ready: Callable[[], bool], wait_s: float, what: str,
          runtime: str, replicas_wanted: int, replicas_before: int, replicas: Callable[[], int]) -> ScaleUp:
    """Poll the first InferenceService's status until it is Loaded and the runtime's pods are ready, keeping each
    status that differs from the one before. ToolError, naming what was missing, after `wait_s`."""
    started = time.monotonic()
    seen: list[tuple[float, ServiceStatus]] = []
    loaded_after: float | None = None
    ready = False
    while True:
        now = status()
        elapsed = round(time.monotonic() - started, 1)
        if now is not None and (not seen or seen[-1][1] != now):
            seen.append((elapsed, now))
        if loaded_after is None and now is not None and now.active_model_state == LOADED:
            loaded_after = elapsed
        ready = ready or pods_ready()
        if ready and loaded_after is not None:
            return ScaleUp(runtime, replicas_wanted, replicas_before, replicas(), seen, loaded_after)
        if elapsed > wait_s:
            missing = [part for part, done in (("its pods ready and serving", ready),
                                               ("the InferenceService Loaded", loaded_after is not None)) if not done]
            last = " ".join(filter(None, (seen[-1][1].active_model_state, seen[-1][1].failure_reason))) if seen \
                else "no status"
            raise ToolError(f"{what}: not {' and '.join(missing)} after {wait_s:.0f} s (last state: {last})")
        time.sleep(POLL_S)
