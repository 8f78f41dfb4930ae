"""The repository's Lua health checks, in a real Lua VM, on healthy, progressing and degraded objects."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmgitops.gitops import render
from mmgitops.gitops.checks import health

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = health.samples()
assert SAMPLES, "no health check samples in mmgitops/data/health-samples.yaml"


@pytest.fixture(scope="module")
def scripts() -> dict[str, str]:
    # From this file, not the working directory: a module-scoped fixture runs before tests/conftest.py's chdir.
    out = render.render_kustomization(render.find_kubectl(), render.Target(ROOT / "argocd/instance", "Kustomization"))
    instance = next(o for o in out.objects if o.kind == "ArgoCD")
    return {c["kind"]: c["check"] for _, c in health.health_checks(instance)}


@pytest.mark.unit
@pytest.mark.parametrize("case", SAMPLES, ids=[f"{s['object']['kind']}-{s['expect']}" for s in SAMPLES])
def test_health_script_returns_the_expected_status(scripts, case):
    status, _message = health.run_check(scripts[case["object"]["kind"]], case["object"])
    assert status == case["expect"]


@pytest.mark.unit
def test_every_required_kind_has_three_samples():
    for _group, kind in health.REQUIRED_KINDS:
        assert {s["expect"] for s in SAMPLES if s["object"]["kind"] == kind} == {
            "Healthy", "Progressing", "Degraded"}, kind


@pytest.mark.unit
def test_a_script_error_is_reported_not_raised():
    status, _ = health.run_check("return obj.status.nothing.here", {"status": {}})
    assert status.startswith("error: ")


@pytest.mark.unit
@pytest.mark.parametrize("script", [
    'return {status = "Healthy", message = string.format("%d", 1)}',
    'local s = "abc"; return {status = "Healthy", message = s:sub(1, 1)}',
    'return {status = "Healthy", message = tostring(math.floor(1.5))}',
])
def test_a_library_argo_cds_sandbox_lacks_is_an_error_here_too(script):
    # Argo CD opens only base, table and package (util/lua/lua.go); lupa would have them all
    status, _ = health.run_check(script, {})
    assert status.startswith("error: ")


@pytest.mark.unit
def test_argo_cds_os_is_there_through_require():
    status, message = health.run_check(
        'local os = require("os"); return {status = "Healthy", message = tostring(os.time() > 0)}', {})
    assert (status, message) == ("Healthy", "true")
