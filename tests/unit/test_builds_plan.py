"""What the first lines of `mmgitops demo` and `make test` say will be built, and how long it takes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from mmgitops.cli import demo
from mmgitops.lab import binaries, builds

pytestmark = pytest.mark.unit
CLUSTER = ["kubernetes", "etcd", "kwok", "argo-cd", "kustomize", "controller"]


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MMGITOPS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MMGITOPS_STATE", str(tmp_path / "state"))
    return tmp_path / "cache"


def test_an_empty_cache_plans_every_cluster_build_at_its_typical_time(empty_cache: Path) -> None:
    todo = builds.pending("cluster")
    assert [p.name for p in todo] == CLUSTER
    assert all(not p.here and p.seconds == builds.TYPICAL_S[p.name] for p in todo)
    line = builds.summary(todo)
    minutes = round(builds.TYPICAL_S["kubernetes"] / 60)
    assert line.startswith(f"first it builds, once (cached under {empty_cache}): kubernetes ({minutes} min typically)")
    assert line.endswith(f"about {sum(builds.TYPICAL_S[n] for n in CLUSTER) / 60:.0f} min in all")


def test_a_build_done_here_is_planned_at_the_time_it_took_here(empty_cache: Path) -> None:
    binaries.record_build("kwok", 42.4)
    binaries.record_build("argo-cd-luahealth", 7)
    kwok = next(p for p in builds.pending("cluster") if p.name == "kwok")
    assert (kwok.seconds, kwok.here, kwok.text()) == (42.0, True, "kwok (42 s last time here)")
    # The Lua health build has a key of its own: it no longer overwrites Argo CD's time.
    assert binaries.last_build_s("argo-cd") is None and binaries.last_build_s("argo-cd-luahealth") == 7


def test_cached_binaries_are_not_planned(empty_cache: Path) -> None:
    for path in binaries.planned().all():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    assert [p.name for p in builds.pending("cluster")] == ["argo-cd", "kustomize", "controller"]


def test_the_demo_says_its_steps_builds_and_time_first(empty_cache: Path) -> None:
    text, steady = demo.plan("embedded", through_argocd=True)
    first, second = text.splitlines()
    assert first.startswith("mmgitops demo: the local cluster starts (runtime pods backed by the embedded mesh "
                            "engine), Argo CD syncs the conformance profile, then the conformance suite runs")
    assert first.endswith(f"(typically {demo.TYPICAL_DEMO_S // 60} min once built).")
    assert second.startswith("mmgitops demo: first it builds, once")
    assert steady is False  # a run that builds does not set the next estimate
    demo.record(250)
    assert "(4 min last time here once built)" in demo.plan("embedded", through_argocd=True)[0]


def test_a_second_build_into_the_same_cache_waits_for_the_first(empty_cache: Path) -> None:
    said: list[str] = []
    order: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with binaries.building(said.append):
            holding.set()
            time.sleep(0.5)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(5)
    with binaries.building(said.append):
        order.append("second checks the cache")
    thread.join()
    assert order == ["first done", "second checks the cache"]
    assert said == [f"another mmgitops process is building into {empty_cache}: waiting for it"]
