"""An instance's periodic work, on ModelMesh's schedule (ModelMesh.establishBackgroundTasks):

* the lease keepalive (the session lease that carries the instance record);
* the publisher: publishInstanceRecord(force=false) every INSTANCE_REC_PUBLISH_FREQ_MS, fixed delay;
* the janitor, 1 s after the start and then every LOCAL_JANITOR_FREQ_SECS: re-logs the published record's gauges
  (so the LRU age gauge moves even when nothing is republished), and drops this instance's load failures older
  than LOAD_FAILURE_EXPIRY_MS from the registry;
* the leader's housekeeping once a second (its model counts, and the vmodel promotions a load's own instance
  missed; ModelMesh does this from registry events and its reaper, the mesh polls the view it already holds);
* the leader's registry reaper (reaper.py): first after REAPER_FIRST_DELAY_MINS, then every
  REGISTRY_REAPER_FREQ_MINS.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from mmgitops.lab.mesh import reaper as reaper_mod
from mmgitops.lab.mesh import vmodels
from mmgitops.lab.mesh.publishing import INSTANCE_REC_PUBLISH_FREQ_MS

if TYPE_CHECKING:
    from mmgitops.lab.mesh.instance import Instance

LOCAL_JANITOR_FREQ_SECS = 6 * 60
# ModelMesh.java: LOAD_FAILURE_EXPIRY_MS, MM_LOAD_FAILURE_EXPIRY_TIME_MS's default. ModelMesh halves it for a model
# used in the last 3 minutes, which needs a cache entry; this mesh keeps none for a failed load, nor does ModelMesh's
# janitor find one once the failed entry has left its cache.
LOAD_FAILURE_EXPIRY_MS = 900_000


def _every(instance: Instance, period_s: float, work: Callable[[], None], name: str, first_s: float | None = None
           ) -> None:
    def loop() -> None:
        if instance.stopping.wait(period_s if first_s is None else first_s):
            return
        while True:
            with contextlib.suppress(Exception):  # a failed round is retried at the next one, as upstream
                work()
            if instance.stopping.wait(period_s):
                return

    threading.Thread(target=loop, daemon=True, name=name).start()


def start(instance: Instance) -> None:
    _every(instance, instance.settings.lease_ttl_s / 3, instance.lease.refresh, "lease-keepalive")
    _every(instance, INSTANCE_REC_PUBLISH_FREQ_MS / 1000, lambda: instance.publish(force=False), "publisher")
    _every(instance, LOCAL_JANITOR_FREQ_SECS, lambda: janitor(instance), "janitor", first_s=1.0)
    _every(instance, 1.0, lambda: _leader_housekeeping(instance), "leader")
    reaper = reaper_mod.Reaper(instance.id)
    _every(instance, reaper_mod.REGISTRY_REAPER_FREQ_MINS * 60, lambda: reap(instance, reaper), "reaper",
           first_s=reaper_mod.REAPER_FIRST_DELAY_MINS * 60)


def janitor(instance: Instance) -> None:
    instance.log_instance_stats()
    expire_failures(instance)


def expire_failures(instance: Instance) -> None:
    """The janitor's pass over the registry for this instance's failures (ModelMesh.janitorTask): each failure
    older than LOAD_FAILURE_EXPIRY_MS is removed from its model's record, so that the model may be tried here
    again and the controller's count of failed copies falls."""
    cutoff = instance.clock() - LOAD_FAILURE_EXPIRY_MS
    for model_id, copies in instance.registry.snapshot().copies.items():
        copy = copies.get(instance.id)
        if copy is None or copy.status != "LOADING_FAILED" or copy.time >= cutoff:
            continue
        with instance.lock:
            retrying = model_id in instance.loading
        if not retrying:
            instance.registry.delete_copy(model_id, instance.id)


def _leader_housekeeping(instance: Instance) -> None:
    if not instance.is_leader():
        instance.metrics.clear_leader()
        return
    instance.leader_metrics()
    vmodels.promote_loaded(instance.registry)


def reap(instance: Instance, reaper: reaper_mod.Reaper) -> None:
    """One reaper run; only the leader prunes."""
    if not instance.is_leader():
        return
    view = instance.registry.snapshot()
    for model_id, instance_id in reaper.prune(view.copies, set(view.instances), instance.clock()):
        instance.registry.delete_copy(model_id, instance_id)
