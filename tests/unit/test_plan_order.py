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

# What keeps a plan from being rendered or ordered at all: a finding naming file, object and field, never "valid".
UNPLANNABLE = [
    ("app-cycle", "app.yaml: Application/loop: spec.source.path: ", "(a cycle)", "plan"),
    ("app-leaves-repo", "app.yaml: Application/outside: spec.source.path: ", "leaves the repository", "plan"),
    ("wave-not-integer", "namespace.yaml: Namespace/models: metadata.annotations.argocd.argoproj.io/sync-wave: ",
     "'first' is not an integer", "plan"),
    ("invalid-yaml", "namespace.yaml: (document): line 3: ", "invalid YAML", "yaml"),
    ("includes-itself", "kustomization.yaml: Kustomization/includes-itself: (object): ", "cycle detected", "kustomize"),
    ("resource-outside", "kustomization.yaml: Kustomization/resource-outside: (object): ", "is not in or below",
     "kustomize"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("fixture", "where", "what", "rule"), UNPLANNABLE, ids=[c[0] for c in UNPLANNABLE])
def test_plan_reports_what_it_cannot_render_or_order(cli, fixture, where, what, rule):
    run = cli("plan", f"{P}/{fixture}")
    assert run.returned and run.code == 1, run.out + run.err
    assert run.lines[-1] == "1 finding(s): the order is not valid", run.out
    finding = run.lines[-2]
    assert finding.startswith(f"{P}/{fixture}/{where}") and what in finding and finding.endswith(f"[{rule}]"), finding


@pytest.mark.unit
def test_plan_lists_objects_by_phase_wave_kind_and_name(cli):
    run = cli("plan", "--format", "json", f"{P}/dsc-before-dsci")
    assert run.returned, run.err
    steps = [f"{s['kind']}/{s['name']}" for s in json.loads(run.out)["steps"]]
    assert steps == ["OperatorGroup/rhods-operator", "Subscription/rhods-operator",
                     "DataScienceCluster/default-dsc", "DSCInitialization/default-dsci"]


@pytest.mark.unit
def test_every_plan_fixture_on_disk_has_a_case():
    assert sorted(c[0] for c in CASES + UNPLANNABLE) == ON_DISK
