"""The controller group's checks fail when the controller breaks its promise: each check run on a status or a
scale-up record a broken controller would have written. The real controller cannot be broken on purpose, so
these stand in for the fault switches the mesh checks have (tests/mesh/test_suite_catches_faults.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from mmgitops.conformance.checks import test_controller as checks
from mmgitops.conformance.cluster import bringup
from mmgitops.conformance.target import Deployed, SampleRef, ScaleUp, ServiceStatus
from mmgitops.errors import ToolError

pytestmark = pytest.mark.unit
SAMPLE = SampleRef("mnist", 7, "models/mnist", "{}")


def status(state: str, reason: str = "", target: str = "", transition: str = "") -> ServiceStatus:
    return ServiceStatus(state, target, transition, reason, f"{reason} message" if reason else "")


@dataclass
class WritesOneStatus:
    """A target whose controller writes one status for whatever is deployed."""

    written: ServiceStatus
    deployed: list[tuple[str, str, str | None]] = field(default_factory=list)

    def samples(self) -> list[SampleRef]:
        return [SAMPLE]

    def deploy(self, name: str, sample: SampleRef, load: bool = True, runtime: str | None = None) -> Deployed:
        self.deployed.append((name, sample.type, runtime))
        return Deployed(name, f"{name}__isvc-0", sample)

    def service_status(self, name: str) -> ServiceStatus:
        return self.written


@pytest.fixture(autouse=True)
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "FAIL_WAIT_S", 0.2)


@pytest.mark.parametrize(("check", "reason"), [
    (checks.test_a_format_no_runtime_serves_fails_to_load_with_no_supporting_runtime, "NoSupportingRuntime"),
    (checks.test_an_inference_service_naming_a_missing_runtime_fails_to_load_with_runtime_not_recognized,
     "RuntimeNotRecognized"),
])
def test_a_refusal_check_passes_on_its_reason_only(check, reason):
    for written in (status("Loading", "RuntimeUnhealthy"), status("FailedToLoad", "ModelLoadFailed"),
                    status("Pending")):
        with pytest.raises(AssertionError):
            check(WritesOneStatus(written), WritesOneStatus(written), None)
    right = WritesOneStatus(status("FailedToLoad", reason))
    check(right, right, None)
    # What was asked for: an unserved format with no runtime named, or the sample naming a missing runtime.
    assert right.deployed in ([("unserved", checks.UNSERVED_FORMAT, "")],
                              [("no-runtime", "sklearn", checks.MISSING_RUNTIME)])


def scale_up(before: int = 0, after: int = 2, *statuses: ServiceStatus) -> ScaleUp:
    seen = list(statuses) or [status("Pending", "RuntimeUnhealthy"), status("Loading"), status("Loaded")]
    return ScaleUp("conf-cpu", 2, before, after, [(float(i), s) for i, s in enumerate(seen)], float(len(seen)))


def test_a_runtime_with_pods_before_its_first_inference_service_fails_the_zero_check():
    checks.test_a_runtime_no_inference_service_uses_has_no_pods(scale_up(), lambda *_: None)
    with pytest.raises(AssertionError, match="scaleToZero"):
        checks.test_a_runtime_no_inference_service_uses_has_no_pods(scale_up(before=2), lambda *_: None)


def test_a_runtime_left_short_of_its_replicas_fails_the_scale_up_check():
    checks.test_the_first_inference_service_scales_its_runtime_up_to_its_replicas(scale_up())
    with pytest.raises(AssertionError):
        checks.test_the_first_inference_service_scales_its_runtime_up_to_its_replicas(scale_up(after=1))


def test_a_failure_written_while_the_runtime_scales_up_fails_the_check():
    checks.test_the_first_inference_service_is_never_failed_while_its_runtime_scales_up(scale_up())
    broken = scale_up(0, 2, status("FailedToLoad", "RuntimeNotRecognized"), status("Loaded"))
    with pytest.raises(AssertionError, match="RuntimeNotRecognized"):
        checks.test_the_first_inference_service_is_never_failed_while_its_runtime_scales_up(broken)


def test_the_scale_up_watch_keeps_each_status_that_changed_until_loaded_on_ready_pods(monkeypatch):
    monkeypatch.setattr(bringup, "POLL_S", 0.0)
    written = iter([None, status("Pending", "RuntimeUnhealthy"), status("Pending", "RuntimeUnhealthy"),
                    status("Loading"), status("Loaded"), status("Loaded")])
    ready = iter([False, False, False, False, False, True])
    made = bringup.watch(lambda: next(written), lambda: next(ready), 60, "runtime x", "conf-cpu", 2, 0, lambda: 2)
    assert [s for _, s in made.statuses] == [status("Pending", "RuntimeUnhealthy"), status("Loading"),
                                             status("Loaded")]
    assert (made.replicas_wanted, made.replicas_before, made.replicas_after) == (2, 0, 2)


def test_the_scale_up_watch_names_what_was_missing_when_it_gives_up(monkeypatch):
    monkeypatch.setattr(bringup, "POLL_S", 0.01)
    with pytest.raises(ToolError, match=r"runtime x: not the InferenceService Loaded after 0 s "
                                        r"\(last state: FailedToLoad ModelLoadFailed\)"):
        bringup.watch(lambda: status("FailedToLoad", "ModelLoadFailed"), lambda: True, 0.05, "runtime x",
                      "conf-cpu", 2, 0, lambda: 2)
