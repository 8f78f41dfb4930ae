"""Where a new copy of a model goes: ModelMesh's PLACEMENT_ORDER and CacheMissForwardingLB.getNext.

Instances are ranked (ModelMesh.PLACEMENT_ORDER): not full before full; among full ones the one whose
least recently used copy is oldest; then fewest models; then most free space; among non-full ones the
older LRU; then more free loading threads, fewer loads in progress, larger capacity, and the id. The
candidates are the best one and those "in range" of it (getNext): when the best is full, those whose
LRU is within 45 s (or a tenth of the best's LRU age) of it; otherwise those not full, with at least a
quarter of the best's free space and, past 10 models, at most 1.25x its model count. One of them is
picked at random. Other instances are judged by their PUBLISHED records (ModelMesh's clusterState),
the local one by its fresh figures. Type constraints and instances already tried are filtered out first.

Not modelled: request-rate (rpm) filtering of the candidates (the mesh publishes no request rates),
preferred labels, and instance versions (every instance runs the same version).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Collection, Mapping

from mmgitops.lab.mesh.registry import InstanceRecord


def remaining(record: InstanceRecord) -> int:
    """InstanceRecord.getRemaining(), in units."""
    return max(0, record.capacity - record.used)


def compare(min_space_units: int, a: tuple[str, InstanceRecord], b: tuple[str, InstanceRecord]) -> int:
    """PLACEMENT_ORDER: negative when `a` is the better place for a new copy."""
    (id1, r1), (id2, r2) = a, b
    if r1.shutting_down != r2.shutting_down:
        return 1 if r1.shutting_down else -1
    rem1, rem2 = remaining(r1), remaining(r2)
    full1, full2 = rem1 < min_space_units, rem2 < min_space_units
    if full1 != full2:
        return 1 if full1 else -1
    if full1 and r1.lru != r2.lru:
        return -1 if r1.lru < r2.lru else 1
    if r1.models != r2.models:
        return r1.models - r2.models
    if rem1 != rem2:
        return -1 if rem1 > rem2 else 1
    if not full1 and r1.lru != r2.lru:
        return -1 if r1.lru < r2.lru else 1
    keys1 = (-(r1.loading_threads - r1.loading), r1.loading, -r1.capacity, id1)
    keys2 = (-(r2.loading_threads - r2.loading), r2.loading, -r2.capacity, id2)
    return -1 if keys1 < keys2 else (1 if keys1 > keys2 else 0)


def ordered(records: Mapping[str, InstanceRecord], min_space_units: int) -> list[tuple[str, InstanceRecord]]:
    return sorted(records.items(), key=functools.cmp_to_key(functools.partial(compare, min_space_units)))


def shortlist(records: Mapping[str, InstanceRecord], min_space_units: int, now_ms: int,
              local: str | None = None) -> list[str]:
    """The best instance and those in range of it (getNext's "simple case"), best first.

    As getNext does, a candidate after the best is judged for range by a record other than its own: the local
    instance by the best one's, any other instance by the local instance's fresh record
    (`us ? bestEntry.getValue() : getFreshInstanceRecord()`). So a full pod can make the shortlist while the
    pod deciding has room, and the random pick can send a load there, which then evicts."""
    ranked = ordered(records, min_space_units)
    if not ranked:
        return []
    best_id, best = ranked[0]
    best_full = remaining(best) < min_space_units
    chosen = [best_id]
    for iid, own in ranked[1:]:
        record = own if local is None or local not in records else best if iid == local else records[local]
        if best_full:
            # every later one is full too (the order puts full instances last)
            gap = record.lru - best.lru
            if gap > 45_000 and gap > (now_ms - best.lru) // 10:
                break
        else:
            free = remaining(record)
            if free < min_space_units or free < remaining(best) >> 2:
                break
            if own.models >= 10 and own.models > best.models + (best.models >> 2):
                break
        chosen.append(iid)
    return chosen


def choose(records: Mapping[str, InstanceRecord], min_space_units: int, now_ms: int, *,
           allowed: Collection[str] | None = None, exclude: Collection[str] = (),
           pick: Callable[[list[str]], str] = random.choice, local: str | None = None) -> str | None:
    """The instance for a new copy, or None when no instance may take it. `local`: the deciding instance, whose
    record in `records` is its fresh one."""
    usable = {i: r for i, r in records.items() if i not in exclude and (allowed is None or i in allowed)}
    candidates = shortlist(usable, min_space_units, now_ms, local)
    return pick(candidates) if candidates else None

