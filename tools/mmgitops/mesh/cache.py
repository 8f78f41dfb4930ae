"""One instance's model cache, and where a new copy goes: ModelMesh's rules, without I/O.

Sizes are kept in ModelMesh's 8 KiB units. Eviction is least recently used first and happens only
when a load needs the room; a load that would evict a model used within the churn age is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mmgitops.mesh.faults import Faults
from mmgitops.mesh.registry import InstanceRecord

UNIT = 8192


def units(size_bytes: int) -> int:
    return max(1, math.ceil(size_bytes / UNIT))


class CacheFull(Exception):
    """No room can be made: nothing is evictable, or the churn guard refused."""


@dataclass
class Entry:
    model_id: str
    size: int  # units
    last_used: int  # epoch ms
    loaded: bool = False


class Cache:
    def __init__(self, capacity_bytes: int, min_churn_age_ms: int, faults: Faults) -> None:
        self.capacity = capacity_bytes // UNIT
        self.min_churn_age_ms = min_churn_age_ms
        self.faults = faults
        self.entries: dict[str, Entry] = {}

    @property
    def used(self) -> int:
        return sum(e.size for e in self.entries.values())

    def lru(self) -> Entry | None:
        loaded = [e for e in self.entries.values() if e.loaded]
        return min(loaded, key=lambda e: e.last_used) if loaded else None

    def touch(self, model_id: str, when: int) -> None:
        entry = self.entries.get(model_id)
        if entry and when > entry.last_used:
            entry.last_used = when

    def _victims(self, needed: int, now: int, keep: str) -> list[Entry]:
        """The entries to evict so that `needed` more units fit, oldest use first."""
        free = self.capacity - self.used
        if free >= needed or self.faults.ignore_capacity:
            return []
        if self.faults.never_evict:
            raise CacheFull(f"cache full ({self.used}/{self.capacity} units) and eviction is off")
        order = sorted((e for e in self.entries.values() if e.loaded and e.model_id != keep),
                       key=lambda e: e.last_used, reverse=self.faults.evict_mru)
        victims: list[Entry] = []
        for entry in order:
            if free >= needed:
                break
            if now - entry.last_used < self.min_churn_age_ms:
                raise CacheFull(f"Cache churn threshold exceeded: least recently used model {entry.model_id} "
                                f"was used {now - entry.last_used} ms ago (minimum age {self.min_churn_age_ms} ms)")
            victims.append(entry)
            free += entry.size
        if free < needed:
            raise CacheFull(f"no room for {needed} units: {self.used}/{self.capacity} used, "
                            f"{sum(not e.loaded for e in self.entries.values())} loading")
        return victims

    def reserve(self, model_id: str, size_bytes: int, last_used: int, now: int) -> list[Entry]:
        """Add a loading entry of the predicted size; returns the entries to evict first (already removed)."""
        needed = units(size_bytes)
        victims = self._victims(needed, now, model_id)
        for victim in victims:
            del self.entries[victim.model_id]
        self.entries[model_id] = Entry(model_id, needed, last_used)
        return victims

    def loaded(self, model_id: str, size_bytes: int, now: int) -> list[Entry]:
        """The load finished with its real size; a larger size than predicted may evict more."""
        entry = self.entries[model_id]
        entry.loaded = True
        real = units(size_bytes)
        grow = real - entry.size
        entry.size = real
        if grow <= 0:
            return []
        entry.size -= grow
        try:
            victims = self._victims(grow, now, model_id)
        except CacheFull:
            victims = []  # the model is in memory already; report the overshoot rather than drop it
        for victim in victims:
            del self.entries[victim.model_id]
        entry.size += grow
        return victims

    def remove(self, model_id: str) -> Entry | None:
        return self.entries.pop(model_id, None)


def place(instances: dict[str, InstanceRecord], size_bytes: int, exclude: set[str] | frozenset[str] = frozenset()
          ) -> str | None:
    """ModelMesh's order for a new copy: instances with room, fewest models, then most free space; when every
    instance is full, the one whose least recently used model is oldest."""
    live = {i: r for i, r in instances.items() if i not in exclude}
    if not live:
        return None
    need = units(size_bytes) * UNIT
    with_room = {i: r for i, r in live.items() if r.capacity - r.used >= need}
    if with_room:
        return min(with_room, key=lambda i: (with_room[i].models, -(with_room[i].capacity - with_room[i].used), i))
    return min(live, key=lambda i: (live[i].lru or 0, i))
