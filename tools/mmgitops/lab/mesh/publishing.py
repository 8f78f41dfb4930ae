"""When an instance publishes its record, as ModelMesh.publishInstanceRecord(force, preShutdown) decides.

Its gauges (modelmesh_instance_*, Metrics.logInstanceStats) and its peers' placement decisions see only
the published record, never the live cache. The rules:

* never within INSTANCE_REC_PUBLISH_MIN_PERIOD_MS of the last publish (unless shutting down);
* forced publishes (publishInstanceRecordAsync: a load queued into the cache, a loaded model whose
  measured size changed its weight) skip the next rule;
* otherwise (the periodic task, every INSTANCE_REC_PUBLISH_FREQ_MS with a fixed delay) only when the
  last publish is at least INSTANCE_REC_PUBLISH_FREQ_MS - 1 s old;
* a record last published within 4 x INSTANCE_REC_PUBLISH_FREQ_MS is replaced only by a significant
  change (`significant`); an older one by any change.
"""

from __future__ import annotations

from mmgitops.lab.mesh.registry import NO_LRU, InstanceRecord

INSTANCE_REC_PUBLISH_FREQ_MS = 40_000
INSTANCE_REC_PUBLISH_MIN_PERIOD_MS = 2_000


def _loading_change(old: InstanceRecord, in_progress: int) -> bool:
    """ModelMesh.loadingChange: a change in loads in progress that matters."""
    current = old.loading
    if in_progress == current:
        return False
    if (in_progress == 0) != (current == 0):
        return True
    if (in_progress <= old.loading_threads) != (current <= old.loading_threads):
        return True
    return abs(in_progress - current) >= 3


def significant(old: InstanceRecord, new: InstanceRecord, now: int, min_space_units: int) -> bool:
    """The thresholds of publishInstanceRecord for a record published less than 160 s ago (Java integer
    arithmetic: divisions truncate)."""
    lru_diff = abs(old.lru - new.lru)
    count_diff = abs(old.models - new.models)
    unchanged = (
        old.shutting_down == new.shutting_down
        and abs(old.capacity - new.capacity) < new.capacity // 50
        and lru_diff < 20_000
        and (old.lru == NO_LRU or lru_diff < (now - old.lru) // 16)
        and count_diff < 10
        and (new.models == 0 if old.models == 0 else count_diff * 100 // old.models < 15)
        and (new.used == 0 if old.used == 0 else abs(old.used - new.used) * 100 // old.used < 20)
        and (max(0, old.capacity - old.used) < min_space_units)
        == (max(0, new.capacity - new.used) < min_space_units)
        and old.loading_threads == new.loading_threads
        and not _loading_change(old, new.loading)
    )
    return not unchanged


def _same(old: InstanceRecord, new: InstanceRecord) -> bool:
    return (old.shutting_down, old.capacity, old.models, old.lru, old.used, old.loading_threads, old.loading) == (
        new.shutting_down, new.capacity, new.models, new.lru, new.used, new.loading_threads, new.loading)


def should_publish(last: InstanceRecord | None, last_at: int, fresh: InstanceRecord, now: int, *, force: bool,
                   min_space_units: int, pre_shutdown: bool = False) -> bool:
    """Whether publishInstanceRecord would write `fresh` now; last/last_at: the record published last and when."""
    since = now - last_at
    if not pre_shutdown and (since < INSTANCE_REC_PUBLISH_MIN_PERIOD_MS
                             or (not force and since < INSTANCE_REC_PUBLISH_FREQ_MS - 1000)):
        return False
    if last is None:
        return True
    if since > INSTANCE_REC_PUBLISH_FREQ_MS * 4:
        return not _same(last, fresh)
    return significant(last, fresh, now, min_space_units)
