"""This repository's own manifests: valid against their real schemas, and installable in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Found from this file, not the working directory, so pytest run from elsewhere collects the same tests.
BOOTSTRAPS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "argocd/bootstrap").iterdir())
PROFILES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "overlays").iterdir())
assert BOOTSTRAPS and PROFILES, f"no Argo CD bootstraps or profiles under {ROOT}"


@pytest.fixture(scope="module")
def report() -> dict:
    import subprocess
    import sys

    # A separate process, as a user runs it: `mmgitops validate --format json`.
    proc = subprocess.run([sys.executable, "-m", "mmgitops", "validate", "--format", "json"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    data["exit"] = proc.returncode
    return data


@pytest.mark.static
def test_repository_manifests_validate_clean(report):
    assert report["findings"] == []
    assert report["exit"] == 0


@pytest.mark.static
def test_every_rendered_object_is_checked_against_a_schema(report):
    counts = report["counts"]
    assert counts["without_schema"] == 0
    checked = counts["checked_against"]
    assert checked["builtin_schema"] + checked["crd_schema"] == counts["objects_checked"]
    assert checked["crd_schema"] > 0 and checked["builtin_schema"] > 0


@pytest.mark.static
def test_schemas_come_from_every_pinned_module(report):
    sources = " ".join(report["counts"]["crd_sources"])
    for module in ("opendatahub-operator", "kserve/kserve", "gpu-operator", "cluster-nfd-operator",
                   "operator-framework/api", "argo-cd", "argocd-operator"):
        assert module in sources


@pytest.mark.static
def test_health_checks_ran_against_all_samples(report):
    from mmgitops.gitops.checks import health

    assert report["counts"]["health_check_cases"] >= len(health.samples())


@pytest.mark.static
@pytest.mark.parametrize("path", BOOTSTRAPS + PROFILES)
def test_sync_plan_is_valid(cli, path):
    run = cli("plan", path)
    assert run.code == 0, run.out
    assert run.lines[-1].startswith("order is valid")


@pytest.mark.static
@pytest.mark.parametrize("overlay", ["serving", "full", "dev"])
def test_rhoai_instance_overlay_manages_modelmesh(overlay):
    from mmgitops.gitops import render

    out = render.render_kustomization(render.find_kubectl(), render.Target(
        Path(f"components/instances/rhoai-instance/overlays/{overlay}").resolve(), "Kustomization"))
    dsc = next(o for o in out.objects if o.kind == "DataScienceCluster")
    assert dsc.api_version == "datasciencecluster.opendatahub.io/v1"
    assert dsc.body["spec"]["components"]["modelmeshserving"]["managementState"] == "Managed"


@pytest.mark.static
def test_app_of_apps_children_wait_on_each_other(cli):
    run = cli("plan", "--format", "json", "argocd/bootstrap/serving-gpu")
    steps = json.loads(run.out)["steps"]
    order = [s["name"] for s in steps if s["kind"] in ("Subscription", "ClusterPolicy", "InferenceService")]
    assert order.index("gpu-operator-certified") < order.index("gpu-cluster-policy") < order.index("onnx-mnist")


@pytest.mark.static
def test_fast_churn_restates_the_base_config_but_for_the_churn_age_and_the_scale_to_zero_grace():
    import yaml

    def config_yaml(path: str) -> dict:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d and d.get("kind") == "ConfigMap"]
        return yaml.safe_load(docs[0]["data"]["config.yaml"])

    base = config_yaml("components/modelmesh/model-serving-config/base/model-serving-config.yaml")
    fast = config_yaml("components/modelmesh/model-serving-config/components/fast-churn/config.yaml")
    assert fast.pop("internalModelMeshEnvVars") == [{"name": "CUSTOM_JVM_ARGS",
                                                     "value": "-Dtas.min_churn_age_ms=1500"}]
    base.pop("internalModelMeshEnvVars")
    assert (base["scaleToZero"].pop("gracePeriodSeconds"), fast["scaleToZero"].pop("gracePeriodSeconds")) == (60, 600)
    assert fast == base


@pytest.mark.static
@pytest.mark.parametrize("apps", sorted(p.name for p in (ROOT / "argocd/apps").iterdir()))
def test_every_application_of_a_profile_names_this_repository(apps):
    """An Application added to a profile outside repo-source's reach keeps app-defaults' placeholder repoURL, and
    Argo CD cannot fetch it ("repository not found"): the local Argo CD found one such."""
    from mmgitops.gitops import render

    out = render.render_kustomization(render.find_kubectl(), render.Target(ROOT / "argocd/apps" / apps,
                                                                           "Kustomization"))
    urls = {o.name: o.body["spec"]["source"]["repoURL"] for o in out.objects if o.kind == "Application"}
    assert urls and {name for name, url in urls.items() if url.startswith("set-by-")} == set()
