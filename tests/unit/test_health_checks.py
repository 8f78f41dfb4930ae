"""The repository's Lua health checks, in a real Lua VM, on healthy, progressing and degraded objects."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmgitops.gitops import render
from mmgitops.gitops.checks import health


@pytest.fixture(scope="module")
def scripts() -> dict[str, str]:
    out = render.render_kustomization(render.find_kubectl(), render.Target(
        Path("argocd/instance").resolve(), "Kustomization"))
    instance = next(o for o in out.objects if o.kind == "ArgoCD")
    return {c["kind"]: c["check"] for _, c in health.health_checks(instance)}


@pytest.mark.unit
@pytest.mark.parametrize("case", health.samples(),
                         ids=[f"{s['object']['kind']}-{s['expect']}" for s in health.samples()])
def test_health_script_returns_the_expected_status(scripts, case):
    status, _message = health.run_check(scripts[case["object"]["kind"]], case["object"])
    assert status == case["expect"]


@pytest.mark.unit
def test_every_required_kind_has_three_samples():
    kinds = [s["object"]["kind"] for s in health.samples()]
    for _group, kind in health.REQUIRED_KINDS:
        assert {s["expect"] for s in health.samples() if s["object"]["kind"] == kind} == {
            "Healthy", "Progressing", "Degraded"}, kind
    assert len(kinds) == 15


@pytest.mark.unit
def test_a_script_error_is_reported_not_raised():
    status, _ = health.run_check("return obj.status.nothing.here", {"status": {}})
    assert status.startswith("error: ")
