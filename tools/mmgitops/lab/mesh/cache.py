"""One instance's model cache: ModelMesh's rules, without I/O.

Sizes are kept in ModelMesh's 8 KiB units; the capacity here is the effective one (the unload buffer
left out, sizing.py). Eviction is least recently used first and happens only when a load needs the
room, whatever the victims' ages: ModelMesh's cache evicts by weight alone. The churn guard is a
separate check made before a load is queued (ModelMesh.java, the cache-miss path of invokeModel): an
instance that is "full" (free space below minSpaceUnits) and whose least recently used entry was used
within minChurnAgeMs refuses the load ("Cache churn threshold exceeded").
"""

from __future__ import annotations

from dataclasses import dataclass

from mmgitops.lab.mesh.faults import Faults
from mmgitops.lab.mesh.registry import NO_LRU
from mmgitops.lab.mesh.sizing import to_units


def units(size_bytes: int) -> int:
    """A model's weight: ModelLoader.toUnits, at least one unit so that every entry counts."""
    return max(1, to_units(size_bytes))


class CacheFull(Exception):
    """No room can be made: nothing is evictable (or eviction is switched off by a fault)."""


class ChurnRefused(Exception):
    """The churn guard refused a load; the message is ModelMesh's."""


class FallThrough(Exception):
    """The model would be the least recently used entry of a full cache: it does not enter it (ModelMesh.loadLocal
    returns null, "too old and/or large to fit in local cache"). A model registered with loadNow counts as used
    an hour ago, so on a pod full of models used since, it stays unloaded until a request needs it."""


@dataclass
class Entry:
    model_id: str
    size: int  # units
    last_used: int  # epoch ms
    loaded: bool = False


class Cache:
    def __init__(self, capacity_units: int, min_churn_age_ms: int, faults: Faults, min_space_units: int = 0) -> None:
        self.capacity = capacity_units
        self.min_churn_age_ms = min_churn_age_ms
        self.min_space_units = min_space_units
        self.faults = faults
        self.entries: dict[str, Entry] = {}

    @property
    def used(self) -> int:
        return sum(e.size for e in self.entries.values())

    def full(self) -> bool:
        """ModelMesh.isFull: free space below minSpaceUnits."""
        return self.capacity - self.used < self.min_space_units

    def lru(self) -> Entry | None:
        return min(self.entries.values(), key=lambda e: e.last_used) if self.entries else None

    def oldest_time(self) -> int:
        """runtimeCache.oldestTime(), NO_LRU when empty (loading entries count: they are in the cache)."""
        lru = self.lru()
        return lru.last_used if lru else NO_LRU

    def touch(self, model_id: str, when: int) -> None:
        entry = self.entries.get(model_id)
        if entry and when > entry.last_used:
            entry.last_used = when

    def check_churn(self, now: int) -> None:
        """Raises ChurnRefused when a new load must be refused to limit cache churn."""
        if self.min_churn_age_ms <= 0 or not self.full():
            return
        oldest = self.oldest_time()
        if oldest != NO_LRU and now - oldest < self.min_churn_age_ms:
            raise ChurnRefused("Cache churn threshold exceeded")

    def _victims(self, needed: int, keep: str) -> list[Entry]:
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
            victims.append(entry)
            free += entry.size
        if free < needed:
            raise CacheFull(f"no room for {needed} units: {self.used}/{self.capacity} used, "
                            f"{sum(not e.loaded for e in self.entries.values())} loading")
        return victims

    def reserve(self, model_id: str, size_bytes: int, last_used: int) -> list[Entry]:
        """Add a loading entry of the predicted size; returns the entries to evict first (already removed).
        FallThrough when making room would evict a model used more recently than this one."""
        needed = units(size_bytes)
        victims = self._victims(needed, model_id)
        oldest = min((e.last_used for e in self.entries.values() if e.loaded and e.model_id != model_id), default=None)
        if victims and oldest is not None and last_used < oldest:
            raise FallThrough(f"{model_id} was last used longer ago than the cache's least recently used model")
        for victim in victims:
            del self.entries[victim.model_id]
        self.entries[model_id] = Entry(model_id, needed, last_used)
        return victims

    def loaded(self, model_id: str, size_bytes: int) -> tuple[list[Entry], bool]:
        """The load finished with its real size: (entries to evict for a larger size, whether the weight changed)."""
        entry = self.entries[model_id]
        entry.loaded = True
        real = units(size_bytes)
        grow = real - entry.size
        if grow <= 0:
            entry.size = real
            return [], grow != 0
        try:
            victims = self._victims(grow, model_id)
        except CacheFull:
            victims = []  # the model is in memory already; report the overshoot rather than drop it
        for victim in victims:
            del self.entries[victim.model_id]
        entry.size = real
        return victims, True

    def remove(self, model_id: str) -> Entry | None:
        return self.entries.pop(model_id, None)
