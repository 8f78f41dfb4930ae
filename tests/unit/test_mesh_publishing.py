"""When an instance republishes its record (ModelMesh.publishInstanceRecord)."""

from __future__ import annotations

import dataclasses

import pytest
from mmgitops.lab.mesh.publishing import should_publish
from mmgitops.lab.mesh.registry import HOUR_MS, NO_LRU, InstanceRecord

pytestmark = pytest.mark.unit
NOW = 10 * HOUR_MS
BASE = InstanceRecord("e", capacity=1000, used=400, models=4, lru=NOW - HOUR_MS, loading_threads=2)


def decide(new: InstanceRecord, ago_ms: int, force: bool, last: InstanceRecord = BASE) -> bool:
    return should_publish(last, NOW - ago_ms, new, NOW, force=force, min_space_units=100)


def test_nothing_is_published_within_two_seconds_even_when_forced():
    changed = dataclasses.replace(BASE, models=9, used=900)
    assert not decide(changed, 1_999, force=True)
    assert decide(changed, 2_000, force=True)


def test_an_unforced_publish_waits_for_39_seconds():
    changed = dataclasses.replace(BASE, models=9, used=900)
    assert not decide(changed, 38_999, force=False)
    assert decide(changed, 39_000, force=False)


def test_small_changes_are_not_published_until_the_record_is_160_seconds_old():
    small = dataclasses.replace(BASE, used=420, models=4)  # 5 % more used, same count
    assert not decide(small, 39_000, force=True)
    assert not decide(small, 160_000, force=False)
    assert decide(small, 160_001, force=False)
    assert not decide(BASE, 160_001, force=False)  # no change at all


def test_the_thresholds_of_each_figure():
    assert decide(dataclasses.replace(BASE, models=5), 39_000, True)  # +25 % models
    assert decide(dataclasses.replace(BASE, used=480), 39_000, True)  # +20 % used
    assert decide(dataclasses.replace(BASE, capacity=1100, used=400), 39_000, True)  # capacity moved >= 2 %
    assert decide(dataclasses.replace(BASE, lru=NOW - HOUR_MS + 20_000), 39_000, True)  # LRU moved 20 s
    assert decide(dataclasses.replace(BASE, used=950), 39_000, True)  # became full (50 < 100 units free)
    assert decide(dataclasses.replace(BASE, loading=1), 39_000, True)  # loads started
    empty = dataclasses.replace(BASE, models=0, used=0, lru=NO_LRU)
    assert decide(dataclasses.replace(empty, models=1, used=1, lru=NOW), 39_000, True, last=empty)


def test_the_first_record_is_always_published():
    assert should_publish(None, 0, BASE, NOW, force=False, min_space_units=100)
