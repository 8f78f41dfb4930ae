"""`mmgitops plan` fails on the orderings Argo CD cannot complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
P = "tests/unit/plan-fixtures"  # as the plan names it: the tests run the CLI from the repository root
ON_DISK = sorted(p.name for p in (ROOT / P).iterdir())
assert ON_DISK, f"no plan fixtures in {ROOT / P}"
CASES = [
    ("dsc-before-dsci", "DataScienceCluster/default-dsc", "not synced after DSCInitialization"),
    ("clusterpolicy-before-gpu-operator", "ClusterPolicy/gpu-cluster-policy",
     "not synced after Subscription/gpu-operator-certified"),
    ("cr-without-operator", "ServingRuntime/mlserver-1.x", "needs DataScienceCluster, which this plan never syncs"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("fixture", "obj", "needs"), CASES, ids=[c[0] for c in CASES])
def test_plan_reports_the_ordering_violation(cli, fixture, obj, needs):
    run = cli("plan", f"{P}/{fixture}")
    violations = [line for line in run.lines if line.endswith(("[plan-order]", "[plan-missing]"))]
    assert run.returned and run.code == 1, run.err
    assert len(violations) == 1, "\n".join(violations)
    assert f": {obj}: (order): {needs}" in violations[0]


@pytest.mark.unit
def test_plan_lists_objects_by_phase_wave_kind_and_name(cli):
    run = cli("plan", "--format", "json", f"{P}/dsc-before-dsci")
    assert run.returned, run.err
    steps = [f"{s['kind']}/{s['name']}" for s in json.loads(run.out)["steps"]]
    assert steps == ["OperatorGroup/rhods-operator", "Subscription/rhods-operator",
                     "DataScienceCluster/default-dsc", "DSCInitialization/default-dsci"]


@pytest.mark.unit
def test_every_plan_fixture_on_disk_has_a_case():
    assert sorted(c[0] for c in CASES) == ON_DISK
