"""Where a new copy goes: ModelMesh's PLACEMENT_ORDER and the candidate shortlist of CacheMissForwardingLB."""

from __future__ import annotations

import pytest
from mmgitops.lab.mesh.placement import choose, ordered, shortlist
from mmgitops.lab.mesh.registry import HOUR_MS, NO_LRU, InstanceRecord

pytestmark = pytest.mark.unit
NOW = 10 * HOUR_MS
MIN_SPACE = 10


def rec(models: int, free: int, lru: int = NO_LRU, capacity: int = 1000) -> InstanceRecord:
    return InstanceRecord("127.0.0.1:1", capacity=capacity, used=capacity - free, models=models, lru=lru,
                          loading_threads=2)


def first(records: dict[str, InstanceRecord]) -> str:
    return ordered(records, MIN_SPACE)[0][0]


def test_not_full_comes_before_full_then_fewest_models_then_most_free_space():
    assert first({"x": rec(5, 500), "y": rec(0, 5)}) == "x"  # y is full (5 < 10 units free)
    assert first({"x": rec(5, 500), "y": rec(2, 100), "z": rec(2, 200)}) == "z"


def test_among_full_instances_the_oldest_lru_comes_first_before_the_model_count():
    assert first({"x": rec(1, 0, lru=NOW), "y": rec(9, 0, lru=NOW - 5)}) == "y"


def test_among_equal_non_full_instances_the_older_lru_wins():
    assert first({"x": rec(2, 100, lru=NOW), "y": rec(2, 100, lru=NOW - 1)}) == "y"


def test_the_shortlist_keeps_instances_in_range_of_the_best():
    records = {"a": rec(2, 400), "b": rec(2, 300), "c": rec(2, 90), "d": rec(1, 0)}
    # c has less than a quarter of a's free space; d is full
    assert shortlist(records, MIN_SPACE, NOW) == ["a", "b"]


def test_the_shortlist_drops_instances_with_many_more_models():
    records = {"a": rec(10, 900), "b": rec(13, 800), "c": rec(12, 800)}
    assert shortlist(records, MIN_SPACE, NOW) == ["a", "c"]


def test_when_all_are_full_the_shortlist_keeps_lrus_close_to_the_oldest():
    records = {"a": rec(5, 0, lru=NOW - HOUR_MS), "b": rec(5, 0, lru=NOW - HOUR_MS + 40_000),
               "c": rec(5, 0, lru=NOW - 60_000)}
    assert shortlist(records, MIN_SPACE, NOW) == ["a", "b"]


def test_the_choice_is_random_among_the_shortlist_and_respects_filters():
    records = {"a": rec(2, 400), "b": rec(2, 300), "c": rec(2, 5)}
    seen = {choose(records, MIN_SPACE, NOW) for _ in range(200)}
    assert seen == {"a", "b"}
    assert choose(records, MIN_SPACE, NOW, exclude={"a"}, pick=lambda c: c[0]) == "b"
    assert choose(records, MIN_SPACE, NOW, allowed={"c"}) == "c"
    assert choose(records, MIN_SPACE, NOW, allowed=set()) is None


def test_a_full_peer_is_judged_by_the_deciding_pods_record_and_can_be_picked():
    # getNext judges a candidate after the best by `us ? bestEntry.getValue() : getFreshInstanceRecord()`: a full
    # peer makes the shortlist while the deciding pod has room, so a load can land on it and evict.
    records = {"local": rec(5, 400), "peer": rec(9, 0)}
    assert shortlist(records, MIN_SPACE, NOW) == ["local"]
    assert shortlist(records, MIN_SPACE, NOW, local="local") == ["local", "peer"]
    assert {choose(records, MIN_SPACE, NOW, local="local") for _ in range(200)} == {"local", "peer"}


def test_the_deciding_pod_is_judged_by_the_best_peers_record():
    records = {"local": rec(9, 0), "peer": rec(5, 400)}
    assert shortlist(records, MIN_SPACE, NOW, local="local") == ["peer", "local"]
