"""`mmgitops plan` fails on the orderings Argo CD cannot complete."""

from __future__ import annotations

import json

import pytest

P = "tests/unit/plan-fixtures"


@pytest.mark.unit
@pytest.mark.parametrize(("fixture", "obj", "needs"), [
    ("dsc-before-dsci", "DataScienceCluster/default-dsc", "not synced after DSCInitialization"),
    ("clusterpolicy-before-gpu-operator", "ClusterPolicy/gpu-cluster-policy",
     "not synced after Subscription/gpu-operator-certified"),
    ("cr-without-operator", "ServingRuntime/mlserver-1.x", "needs DataScienceCluster, which this plan never syncs"),
])
def test_plan_reports_the_ordering_violation(cli, fixture, obj, needs):
    run = cli("plan", f"{P}/{fixture}")
    violations = [line for line in run.lines if line.endswith(("[plan-order]", "[plan-missing]"))]
    assert run.code == 1
    assert len(violations) == 1, "\n".join(violations)
    assert f": {obj}: (order): {needs}" in violations[0]


@pytest.mark.unit
def test_plan_lists_objects_by_phase_wave_kind_and_name(cli):
    run = cli("plan", "--format", "json", f"{P}/dsc-before-dsci")
    steps = [f"{s['kind']}/{s['name']}" for s in json.loads(run.out)["steps"]]
    assert steps == ["OperatorGroup/rhods-operator", "Subscription/rhods-operator",
                     "DataScienceCluster/default-dsc", "DSCInitialization/default-dsci"]
