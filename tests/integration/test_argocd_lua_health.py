"""The health scripts in Argo CD's own Lua engine: every script of every ArgoCD CR rendered from argocd/, on every
sample of its kind, gives in gopher-lua (as the application controller runs `resource.customizations.health.*`)
the sample's expected status, and the same status and message as lupa, which `mmgitops validate` runs.

No cluster: the engine is a small command built in Argo CD's wrapper module on first use (minutes cold, cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mmgitops.gitops import render
from mmgitops.gitops.checks import health
from mmgitops.lab.argocd import luahealth

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = health.samples()
assert SAMPLES, "no health check samples in mmgitops/data/health-samples.yaml"


@dataclass(frozen=True)
class Run:
    script: str        # where the script comes from: the ArgoCD CR's file and its entry
    argo: dict[str, str]
    lupa: tuple[str, str]


def rendered_checks() -> dict[str, dict[str, Any]]:
    """Every resourceHealthChecks entry of every ArgoCD CR under argocd/, once per distinct entry."""
    targets = render.discover([ROOT / "argocd"])
    found: dict[str, dict[str, Any]] = {}
    for rendered in render.render_all(targets, render.find_kubectl()):
        for obj in rendered.objects:
            if obj.kind == "ArgoCD" and obj.group == "argoproj.io":
                for index, check in health.health_checks(obj):
                    if check not in found.values():
                        found[f"{obj.file} {obj.ref} resourceHealthChecks[{index}] ({check.get('kind')})"] = check
    return found


@pytest.fixture(scope="module")
def checks() -> dict[str, dict[str, Any]]:
    found = rendered_checks()
    assert found, f"no ArgoCD CR with resourceHealthChecks rendered from {ROOT / 'argocd'}"
    return found


@pytest.fixture(scope="module")
def runs(checks: dict[str, dict[str, Any]]) -> dict[int, list[Run]]:
    """Per sample (by index), each applicable script's verdict in both engines; Argo CD's in one run for all."""
    pairs = [(where, check, SAMPLES.index(case)) for where, check in checks.items()
             for case in health.cases_for(check)]
    cases = [{"script": str(check.get("check", "")), "object": SAMPLES[i]["object"]} for _, check, i in pairs]
    verdicts = luahealth.evaluate(cases)
    out: dict[int, list[Run]] = {i: [] for i in range(len(SAMPLES))}
    for (where, _check, i), case, argo in zip(pairs, cases, verdicts, strict=True):
        out[i].append(Run(where, argo, health.run_check(case["script"], case["object"])))
    return out


def test_every_health_script_has_samples(checks: dict[str, dict[str, Any]]) -> None:
    assert [where for where, check in checks.items() if not health.cases_for(check)] == []


@pytest.mark.parametrize("index", range(len(SAMPLES)),
                         ids=[f"{s['object']['kind']}-{s['expect']}-{i}" for i, s in enumerate(SAMPLES)])
def test_argo_cd_agrees_with_the_sample_and_with_lupa(runs: dict[int, list[Run]], index: int) -> None:
    case = SAMPLES[index]
    assert runs[index], f"no health script in argocd/ for {case['object']['apiVersion']} {case['object']['kind']}"
    for run in runs[index]:
        assert "error" not in run.argo, f"{run.script}: Argo CD: {run.argo['error']}"
        assert run.argo["status"] == case["expect"], run.script
        assert (run.argo["status"], run.argo["message"]) == run.lupa, f"{run.script}: Argo CD vs lupa"
        if "message" in case:
            assert run.argo["message"] == case["message"], run.script


def test_a_script_error_is_reported_per_case() -> None:
    # The command answers every case even when one script fails, as the controller reports one resource Unknown.
    obj = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}}
    broken, fine = luahealth.evaluate([{"script": "return obj.status.nothing", "object": obj},
                                       {"script": 'return {status = "Healthy"}', "object": obj}])
    assert "error" in broken
    assert fine == {"status": "Healthy", "message": ""}
