"""The pod backer restarts an exited container as the kubelet does (restartPolicy Always): client-go's
flowcontrol.Backoff as kuberuntime_manager.go doBackOff uses it, 10 s doubling to a 5-minute cap, started over once
the container ran longer than twice the cap."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmgitops.lab.kubelet import backer

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(backer.time, "monotonic", clock)
    return clock


def started() -> tuple[backer.Backed, list[float]]:
    starts: list[float] = []
    pod = backer.Backed(uid="u")
    pod.restart["manager"] = lambda: starts.append(0.0) or 4242
    return pod, starts


def waits(kubelet: backer.Backer, pod: backer.Backed, starts: list[float], clock: Clock, ran: float) -> float:
    """The container runs `ran` seconds and exits; how long the kubelet then waits before starting it again."""
    clock.now += ran
    exited, before = clock.now, len(starts)
    while len(starts) == before:
        kubelet._restart_when_due("ns", "pod", "manager", pod, Path("manager.log"))
        clock.now += 1.0
    return clock.now - 1.0 - exited


def test_a_container_that_keeps_exiting_waits_longer_each_time_up_to_five_minutes(tmp_path, clock, capsys):
    kubelet, (pod, starts) = backer.Backer(tmp_path, 0, None, None), started()
    assert [waits(kubelet, pod, starts, clock, ran=60) for _ in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert pod.restarts["manager"] == 8
    assert "container manager exited; restart 8" in capsys.readouterr().err


def test_a_container_that_ran_longer_than_twice_the_cap_starts_again_at_once(tmp_path, clock):
    kubelet, (pod, starts) = backer.Backer(tmp_path, 0, None, None), started()
    assert [waits(kubelet, pod, starts, clock, ran=60) for _ in range(4)] == [0, 10, 20, 40]
    assert waits(kubelet, pod, starts, clock, ran=2 * backer.MAX_BACKOFF_S + 1) == 0
    assert waits(kubelet, pod, starts, clock, ran=60) == 10
    assert pod.restarts["manager"] == 6  # restartCount keeps counting
