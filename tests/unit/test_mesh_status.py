"""Model status as ModelMesh reports it: copies UNKNOWN, failures LOADING_FAILED, dead copies still listed."""

from __future__ import annotations

import pytest
from mmgitops.lab.mesh.registry import CopyRecord
from mmgitops.lab.mesh.status import Status, status_info

pytestmark = pytest.mark.unit


def test_present_copies_are_unknown_and_failures_loading_failed_newest_first():
    info = status_info({"a": CopyRecord("LOADED", 10), "b": CopyRecord("LOADING_FAILED", 20, "boom"),
                        "c": CopyRecord("LOADING", 5)}, {"a", "b", "c"})
    assert info.status == Status.LOADED and list(info.errors) == ["boom"]
    assert [(c.location, c.copyStatus) for c in info.modelCopyInfos] == [
        ("b", Status.LOADING_FAILED), ("a", Status.UNKNOWN), ("c", Status.UNKNOWN)]


def test_a_dead_instances_copy_stays_listed_while_another_copy_is_loaded():
    info = status_info({"dead": CopyRecord("LOADED", 1), "live": CopyRecord("LOADED", 2)}, {"live"})
    assert info.status == Status.LOADED
    assert [c.location for c in info.modelCopyInfos] == ["live", "dead"]


def test_only_dead_copies_mean_not_loaded_without_copies():
    info = status_info({"dead": CopyRecord("LOADED", 1)}, {"live"})
    assert info.status == Status.NOT_LOADED and not info.modelCopyInfos


def test_a_load_that_failed_before_any_copy_is_reported_by_the_call():
    info = status_info({}, {"live"}, "There are no running instances that meet ...")
    assert info.status == Status.LOADING_FAILED and list(info.errors) == [
        "There are no running instances that meet ..."]
    assert status_info({}, {"live"}).status == Status.NOT_LOADED
