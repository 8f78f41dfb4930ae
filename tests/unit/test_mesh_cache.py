"""The local mesh's cache rules, as ModelMesh states them, without processes."""

from __future__ import annotations

import pytest
from mmgitops.lab.mesh.cache import Cache, CacheFull, ChurnRefused, FallThrough, units
from mmgitops.lab.mesh.faults import Faults
from mmgitops.lab.mesh.registry import HOUR_MS, NO_LRU
from mmgitops.modelmesh.defaults import UNIT_BYTES

pytestmark = pytest.mark.unit
NOW = 10 * HOUR_MS
NO_FAULTS = Faults()


def full_cache(faults: Faults = NO_FAULTS, churn_ms: int = 1000, min_space: int = 1) -> Cache:
    """Three one-unit models loaded: a (used 10 s ago), b (never used: an hour ago), c (used 5 s ago)."""
    cache = Cache(3, churn_ms, faults, min_space)
    for model_id, last_used in (("a", NOW - 10_000), ("b", NOW - HOUR_MS), ("c", NOW - 5_000)):
        cache.reserve(model_id, 1000, last_used)
        cache.loaded(model_id, 1000)
    return cache


def test_sizes_count_in_8_kib_units():
    assert (units(1), units(UNIT_BYTES), units(UNIT_BYTES + 1)) == (1, 1, 2)


def test_a_never_used_model_is_evicted_before_used_ones():
    cache = full_cache()
    victims = cache.reserve("d", 1000, NOW)
    assert [v.model_id for v in victims] == ["b"]
    assert set(cache.entries) == {"a", "c", "d"}


def test_eviction_follows_least_recent_use():
    cache = full_cache()
    cache.reserve("d", 1000, NOW)
    cache.loaded("d", 1000)
    assert [v.model_id for v in cache.reserve("e", 1000, NOW)] == ["a"]
    cache.touch("c", NOW + 1)
    cache.loaded("e", 1000)
    assert [v.model_id for v in cache.reserve("f", 2 * UNIT_BYTES, NOW + 2000)] == ["d", "e"]


def test_a_model_older_than_a_full_caches_lru_falls_through_and_evicts_nothing():
    # ModelMesh.loadLocal: a registration with loadNow counts as used an hour ago; on a full pod it stays out.
    cache = full_cache()
    with pytest.raises(FallThrough):
        cache.reserve("d", 1000, NOW - 2 * HOUR_MS)
    assert set(cache.entries) == {"a", "b", "c"}


def test_an_old_model_still_loads_where_there_is_room():
    cache = Cache(3, 1000, Faults())
    cache.reserve("a", 1000, NOW)
    cache.loaded("a", 1000)
    assert cache.reserve("b", 1000, NOW - HOUR_MS) == []


def test_nothing_is_evicted_while_there_is_room():
    cache = Cache(3, 1000, Faults())
    assert cache.reserve("a", 1000, NOW) == []
    assert cache.used == 1


def test_eviction_itself_ignores_the_churn_age():
    # ModelMesh's cache evicts by weight alone; the churn guard is a separate check before the load.
    cache = full_cache(churn_ms=60_000, min_space=0)
    assert [v.model_id for v in cache.reserve("d", 1000, NOW)] == ["b"]


def test_the_churn_guard_refuses_a_load_on_a_full_instance_whose_lru_is_recent():
    cache = full_cache(churn_ms=60_000)
    cache.touch("b", NOW - 1000)  # the LRU entry (a, 10 s ago) is younger than the churn age
    with pytest.raises(ChurnRefused, match=r"^Cache churn threshold exceeded$"):
        cache.check_churn(NOW)
    cache.check_churn(NOW + 60_000)  # old enough now


def test_the_churn_guard_leaves_an_instance_that_is_not_full_alone():
    cache = full_cache(churn_ms=60_000, min_space=0)  # free 0 is not below 0 units: not full
    cache.touch("b", NOW - 1000)
    cache.check_churn(NOW)
    assert Cache(10, 60_000, NO_FAULTS, 5).full() is False
    assert full_cache(min_space=1).full() is True


def test_the_oldest_time_counts_loading_entries_and_is_max_when_empty():
    cache = Cache(10, 0, NO_FAULTS)
    assert cache.oldest_time() == NO_LRU
    cache.reserve("x", 1000, NOW - 5)
    assert cache.oldest_time() == NOW - 5


def test_a_larger_real_size_evicts_more_after_the_load_and_reports_the_new_weight():
    cache = full_cache()
    cache.reserve("d", 1000, NOW)
    victims, resized = cache.loaded("d", 2 * UNIT_BYTES)
    assert [v.model_id for v in victims] == ["a"] and resized
    assert cache.used <= cache.capacity
    cache.reserve("e", 1000, NOW)
    assert cache.loaded("e", 1000) == ([], False)


def test_fault_switches_change_the_rules():
    with pytest.raises(CacheFull):
        full_cache(Faults(never_evict=True)).reserve("d", 1000, NOW)
    over = full_cache(Faults(ignore_capacity=True))
    assert over.reserve("d", 1000, NOW) == [] and over.used > over.capacity
    assert [v.model_id for v in full_cache(Faults(evict_mru=True)).reserve("d", 1000, NOW)] == ["c"]
