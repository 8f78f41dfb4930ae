"""A dead instance's copies stay in the registry until the leader's reaper prunes them (ModelMesh's reaper)."""

from __future__ import annotations

import pytest
from mmgitops.lab.mesh.reaper import ASSUME_INSTANCE_GONE_AFTER_MS, REGISTRY_REAPER_FREQ_MINS, Reaper
from mmgitops.lab.mesh.registry import CopyRecord

pytestmark = pytest.mark.unit
MIN = 60_000
T0 = 1_000 * MIN


def test_a_missing_instances_copies_go_only_after_it_was_missing_for_ten_minutes():
    copies = {"m": {"dead": CopyRecord("LOADED", T0 - 30 * MIN), "live": CopyRecord("LOADED", T0 - 30 * MIN)}}
    reaper = Reaper("leader")
    runs = [T0 + k * REGISTRY_REAPER_FREQ_MINS * MIN for k in range(3)]
    assert reaper.prune(copies, {"live", "leader"}, runs[0]) == []  # first seen missing
    assert reaper.prune(copies, {"live", "leader"}, runs[1]) == []  # 7 min: not yet
    assert reaper.prune(copies, {"live", "leader"}, runs[2]) == [("m", "dead")]  # 14 min > 10 min
    assert ASSUME_INSTANCE_GONE_AFTER_MS == 10 * MIN


def test_young_copies_and_returning_instances_are_left_alone():
    reaper = Reaper("leader")
    young = {"m": {"dead": CopyRecord("LOADED", T0 - MIN)}}
    assert reaper.prune(young, set(), T0) == [] and reaper.missing == {}
    old = {"m": {"back": CopyRecord("LOADED", T0 - 30 * MIN)}}
    reaper.prune(old, set(), T0)
    assert reaper.prune(old, {"back"}, T0 + 14 * MIN) == [] and reaper.missing == {}
