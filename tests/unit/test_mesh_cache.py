"""The local mesh's cache and placement rules, as ModelMesh states them, without processes."""

from __future__ import annotations

import pytest
from mmgitops.mesh.cache import UNIT, Cache, CacheFull, place, units
from mmgitops.mesh.faults import Faults
from mmgitops.mesh.registry import HOUR_MS, InstanceRecord

pytestmark = pytest.mark.unit
NOW = 10 * HOUR_MS


NO_FAULTS = Faults()


def full_cache(faults: Faults = NO_FAULTS, churn_ms: int = 1000) -> Cache:
    """Three one-unit models loaded: a (used 10 s ago), b (never used: an hour ago), c (used 5 s ago)."""
    cache = Cache(3 * UNIT, churn_ms, faults)
    for model_id, last_used in (("a", NOW - 10_000), ("b", NOW - HOUR_MS), ("c", NOW - 5_000)):
        cache.reserve(model_id, 1000, last_used, NOW)
        cache.loaded(model_id, 1000, NOW)
    return cache


def test_sizes_count_in_8_kib_units():
    assert (units(1), units(UNIT), units(UNIT + 1)) == (1, 1, 2)
    assert Cache(10 * UNIT + 5, 0, Faults()).capacity == 10


def test_a_never_used_model_is_evicted_before_used_ones():
    cache = full_cache()
    victims = cache.reserve("d", 1000, NOW, NOW)
    assert [v.model_id for v in victims] == ["b"]
    assert set(cache.entries) == {"a", "c", "d"}


def test_eviction_follows_least_recent_use():
    cache = full_cache()
    cache.reserve("d", 1000, NOW, NOW)
    cache.loaded("d", 1000, NOW)
    assert [v.model_id for v in cache.reserve("e", 1000, NOW, NOW)] == ["a"]
    cache.touch("c", NOW + 1)
    cache.loaded("e", 1000, NOW)
    later = NOW + 2000  # past the 1 s churn age of d and e
    assert [v.model_id for v in cache.reserve("f", 2 * UNIT, later, later)] == ["d", "e"]


def test_nothing_is_evicted_while_there_is_room():
    cache = Cache(3 * UNIT, 1000, Faults())
    assert cache.reserve("a", 1000, NOW, NOW) == []
    assert cache.used == 1


def test_the_churn_guard_refuses_to_evict_a_recently_used_model():
    cache = full_cache(churn_ms=60_000)
    cache.touch("b", NOW - 1000)
    with pytest.raises(CacheFull, match="Cache churn threshold exceeded"):
        cache.reserve("d", 1000, NOW, NOW)
    assert set(cache.entries) == {"a", "b", "c"}


def test_a_larger_real_size_evicts_more_after_the_load():
    cache = full_cache()
    cache.reserve("d", 1000, NOW, NOW)
    victims = cache.loaded("d", 2 * UNIT, NOW)
    assert [v.model_id for v in victims] == ["a"]
    assert cache.used <= cache.capacity


def test_fault_switches_change_the_rules():
    with pytest.raises(CacheFull):
        full_cache(Faults(never_evict=True)).reserve("d", 1000, NOW, NOW)
    over = full_cache(Faults(ignore_capacity=True))
    assert over.reserve("d", 1000, NOW, NOW) == [] and over.used > over.capacity
    assert [v.model_id for v in full_cache(Faults(evict_mru=True)).reserve("d", 1000, NOW, NOW)] == ["c"]


def record(models: int, free_units: int, lru: int = 0) -> InstanceRecord:
    return InstanceRecord("127.0.0.1:1", capacity=100 * UNIT, used=(100 - free_units) * UNIT, models=models, lru=lru)


def test_placement_prefers_instances_with_room_then_fewest_models_then_most_free_space():
    assert place({"x": record(5, 50), "y": record(2, 10), "z": record(2, 20)}, 1000) == "z"
    assert place({"x": record(5, 50), "y": record(0, 0)}, 1000) == "x"


def test_placement_when_all_are_full_picks_the_oldest_lru():
    assert place({"x": record(9, 0, lru=NOW), "y": record(9, 0, lru=NOW - 5)}, 1000) == "y"
    assert place({}, 1000) is None
