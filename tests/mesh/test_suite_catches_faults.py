"""The conformance suite catches a broken mesh: with each fault switch of the local mesh on, the check that
should catch it fails, and the named others keep passing (so the failure is the fault's, not a broken run).

Each fault runs the suite's relevant groups in a subprocess whose embedded mesh starts with the switch on
(MMGITOPS_CONFORMANCE_FAULTS), and reads the outcome of every check from its JUnit XML. Two runs go at once
to keep the file's time down; only the runs of the selected parametrizations start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from mmgitops.conformance.mesh_target import FAULTS_ENV

pytestmark = pytest.mark.mesh
RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Expectation:
    groups: str  # the -m expression: only the groups that bear on the fault
    fail: tuple[str, ...]
    pass_: tuple[str, ...]
    extra: tuple[str, ...] = ()


EXPECTED = {
    "wrong-model": Expectation(
        "routing",
        fail=("test_each_model_answers_its_own_prediction_by_model_name",
              "test_the_mm_vmodel_id_header_routes_with_an_empty_model_name", "test_rest_infer_answers_by_name",
              "test_every_model_answers_through_every_pod", "test_the_response_names_the_concrete_model_id"),
        pass_=("test_both_model_headers_are_invalid_argument", "test_an_unknown_name_is_not_found")),
    "evict-mru": Expectation(
        "eviction",
        fail=("test_the_least_recently_used_model_of_the_pod_goes_standby",
              "test_the_recently_used_models_stay_loaded"),
        pass_=("test_the_eviction_is_counted", "test_used_bytes_stay_within_capacity")),
    "ignore-capacity": Expectation(
        "eviction",
        fail=("test_used_bytes_stay_within_capacity", "test_the_least_recently_used_model_of_the_pod_goes_standby",
              "test_the_eviction_is_counted"),
        pass_=("test_the_recently_used_models_stay_loaded",)),
    "never-evict": Expectation(
        "routing or eviction",
        fail=("test_the_least_recently_used_model_of_the_pod_goes_standby", "test_the_recently_used_models_stay_loaded",
              "test_the_eviction_is_counted", "test_used_bytes_stay_within_capacity",
              "test_touching_the_evicted_model_reloads_it_and_evicts_the_next_lru"),
        pass_=("test_each_model_answers_its_own_prediction_by_model_name", "test_every_model_answers_through_every_pod",
               "test_rest_infer_answers_by_name")),
    "no-forward": Expectation(
        "routing",
        fail=("test_every_model_answers_through_every_pod",),
        pass_=("test_both_model_headers_are_invalid_argument", "test_an_unknown_name_is_not_found")),
    "slow-load": Expectation(
        "coldload",
        fail=("test_cold_loads_stay_within_the_budget",),
        pass_=("test_an_evicted_model_goes_standby_and_its_first_request_succeeds",
               "test_every_cold_request_is_counted_as_a_cache_miss", "test_a_cold_request_is_slower_than_a_warm_one"),
        # slow-load adds 1 s to every load: a budget under 1 s must catch it, whatever the machine.
        extra=("--cold-budget-ms", "900")),
    "update-gap": Expectation(
        "update",
        fail=("test_no_request_fails_while_the_model_is_replaced",),
        pass_=("test_the_new_model_becomes_active_once_loaded", "test_the_replaced_model_is_deleted",
               "test_every_pod_answers_with_the_new_model_soon_after_the_switch")),
    "keep-replaced": Expectation(
        "update",
        fail=("test_the_replaced_model_is_deleted",),
        pass_=("test_no_request_fails_while_the_model_is_replaced", "test_the_new_model_becomes_active_once_loaded",
               "test_every_answer_is_the_old_model_until_the_pod_answers_with_the_new_one")),
}
RANK = {"passed": 0, "skipped": 1, "failed": 2}


@dataclass
class Run:
    outcomes: dict[str, str]  # test function name -> passed | failed | skipped (an error counts as failed)
    log: str


def run_suite(fault: str, junit: Path) -> Run:
    wanted = EXPECTED[fault]
    env = {**os.environ, FAULTS_ENV: fault}
    done = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "mmgitops.conformance.checks", "-m",
                           wanted.groups, "-q", "-p", "no:cacheprovider", "--junitxml", str(junit), *wanted.extra],
                          capture_output=True, text=True, env=env, cwd=junit.parent, timeout=RUN_TIMEOUT_S,
                          stdin=subprocess.DEVNULL)
    log = (done.stdout + done.stderr)[-3000:]
    if not junit.exists():
        pytest.fail(f"the suite with {fault} on wrote no JUnit XML (exit {done.returncode}): {log}")
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        # A teardown error is a second entry of the same test: the worst outcome stands.
        name = case.get("name", "")
        if RANK[outcome] >= RANK.get(outcomes.get(name, "passed"), 0):
            outcomes[name] = outcome
    return Run(outcomes, log)


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Future[Run]]:
    selected = [item.callspec.params["fault"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")]
    pool = ThreadPoolExecutor(max_workers=2)
    request.addfinalizer(lambda: pool.shutdown(wait=True))
    junit_dir = tmp_path_factory.mktemp("fault-runs")
    return {fault: pool.submit(run_suite, fault, junit_dir / f"{fault}.xml") for fault in dict.fromkeys(selected)}


@pytest.mark.parametrize("fault", list(EXPECTED))
def test_the_check_for_the_fault_fails_and_the_others_pass(fault, runs):
    run = runs[fault].result(timeout=RUN_TIMEOUT_S + 60)
    wanted = EXPECTED[fault]
    seen = {name: run.outcomes.get(name, "not run") for name in (*wanted.fail, *wanted.pass_)}
    expected = {**{name: "failed" for name in wanted.fail}, **{name: "passed" for name in wanted.pass_}}
    assert seen == expected, f"suite output with {fault} on:\n{run.log}"
