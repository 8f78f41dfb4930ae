"""Each broken fixture fails validation with exactly one line naming file, object and field."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
F = "tests/unit/fixtures"  # as findings name it: the tests run the CLI from the repository root
# Every fixture on disk, found from this file and not from the working directory: pytest run from elsewhere
# still sees them all, and a fixture without a case below fails test_every_fixture_on_disk_has_a_case.
ON_DISK = sorted(p.name for p in (ROOT / F).iterdir())
assert ON_DISK, f"no broken fixtures in {ROOT / F}"

# fixture, file the line names, object, field, rule
CASES = [
    ("unknown-field-dsc.yaml", None, "DataScienceCluster/default-dsc",
     "spec.components.modelmeshserving.replicas", "schema"),
    ("wrong-enum-ingress.yaml", None, "DataScienceCluster/default-dsc",
     "spec.components.kserve.serving.ingressGateway.certificate.type", "schema"),
    ("wrong-enum-management-state.yaml", None, "DataScienceCluster/default-dsc",
     "spec.components.modelmeshserving.managementState", "schema"),
    ("dsc-v2.yaml", None, "DataScienceCluster/default-dsc", "apiVersion", "dsc-v1"),
    ("wrong-apiversion-deployment.yaml", None, "Deployment/web", "apiVersion", "schema"),
    ("missing-required-clusterpolicy.yaml", None, "ClusterPolicy/gpu-cluster-policy", "spec.toolkit", "schema"),
    ("namespaced-clusterpolicy.yaml", None, "ClusterPolicy/gpu-cluster-policy", "metadata.namespace",
     "cluster-scoped-no-namespace"),
    ("namespaced-without-namespace.yaml", None, "ConfigMap/model-serving-config", "metadata.namespace",
     "cluster-scoped-no-namespace"),
    ("channel-3x.yaml", None, "Subscription/rhods-operator", "spec.channel", "rhoai-channel-2x"),
    ("plaintext-secret.yaml", None, "Secret/storage-config", "stringData", "no-plaintext-secret"),
    ("duplicate-object.yaml", None, "ConfigMap/model-serving-config", "metadata.name", "unique-object"),
    ("duplicate-in-kustomization", "kustomization.yaml", "Namespace/modelmesh-models", "metadata.name",
     "duplicate-object"),
    ("invalid-yaml.yaml", None, "(document)", "line 5", "yaml"),
    ("invalid-yaml-in-kustomization", "namespace.yaml", "(document)", "line 4", "yaml"),
    ("bad-kustomization", "kustomization.yaml", "Kustomization/bad-kustomization", "resourcez", "kustomize"),
    ("missing-resource", "kustomization.yaml", "Kustomization/missing-resource", "resources", "kustomize"),
    ("missing-env-file", "kustomization.yaml", "Kustomization/missing-env-file", "secretGenerator", "kustomize"),
    ("latest-image.yaml", None, "ServingRuntime/mlserver-1.x", "spec.containers[0].image", "no-latest-image"),
    ("untagged-image.yaml", None, "Deployment/web", "spec.template.spec.containers[0].image", "no-latest-image"),
    ("isvc-no-annotation.yaml", None, "InferenceService/sklearn-mnist",
     "metadata.annotations.serving.kserve.io/deploymentMode", "isvc-modelmesh-annotation"),
    ("isvc-namespace-not-enabled.yaml", None, "InferenceService/sklearn-mnist", "metadata.namespace",
     "isvc-modelmesh-namespace"),
    ("dsci-wrong-name.yaml", None, "DSCInitialization/my-dsci", "metadata.name", "dsci-default-name"),
    ("cel-dsci-metrics-replicas.yaml", None, "DSCInitialization/default-dsci", "spec.monitoring.metrics", "cel"),
    ("int-or-string.yaml", None, "ServingRuntime/mlserver-1.x", "spec.containers[0].resources.requests.cpu",
     "schema"),
    ("wrong-type.yaml", None, "ServingRuntime/mlserver-1.x", "spec.multiModel", "schema"),
    ("sync-wave-not-integer.yaml", None, "Namespace/modelmesh-models",
     "metadata.annotations.argocd.argoproj.io/sync-wave", "sync-wave-integer"),
    ("missing-skip-dry-run.yaml", None, "NodeFeatureDiscovery/nfd-instance",
     "metadata.annotations.argocd.argoproj.io/sync-options", "skip-dry-run-operator-crds"),
    ("unknown-kind.yaml", None, "Widget/w", "apiVersion", "schema"),
    ("unknown-metadata-field.yaml", None, "Namespace/modelmesh-models", "metadata.lables", "schema"),
    ("two-dscs.yaml", None, "DataScienceCluster/second-dsc", "metadata.name", "dsc-singleton"),
    ("modelmesh-removed", "base/dsc.yaml", "DataScienceCluster/default-dsc",
     "spec.components.modelmeshserving.managementState", "modelmesh-managed"),
    ("kserve-before-modelmesh", "overlay/kustomization.yaml", "Kustomization/overlay", "components[0]",
     "modelmesh-before-kserve"),
    ("unused-component", "kustomization.yaml", "Component/unused-component", "(object)", "component-used"),
    ("secret-env-committed", "kustomization.yaml", "Kustomization/secret-env-committed",
     "secretGenerator[0].envs[0]", "secret-env-ignored"),
    ("health-check-broken", "argocd.yaml", "ArgoCD/openshift-gitops", "spec.resourceHealthChecks[4].check",
     "health-check"),
    ("health-check-missing", "argocd.yaml", "ArgoCD/openshift-gitops", "spec.resourceHealthChecks",
     "health-check"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("fixture", "file", "obj", "field", "rule"), CASES, ids=[c[0] for c in CASES])
def test_broken_fixture_yields_one_line_naming_file_object_and_field(cli, fixture, file, obj, field, rule):
    run = cli("validate", f"{F}/{fixture}")
    assert run.returned, "main() raised SystemExit instead of returning its exit code"
    assert (run.code, run.err) == (1, ""), run.out + run.err
    findings, summary = run.lines[:-1], run.lines[-1]
    assert len(findings) == 1, "\n".join(findings)
    expected_file = f"{F}/{fixture}/{file}" if file else f"{F}/{fixture}"
    assert findings[0].startswith(f"{expected_file}: {obj}: {field}: "), findings[0]
    assert findings[0].endswith(f"[{rule}]")
    assert "1 finding(s)" in summary


@pytest.mark.unit
def test_every_fixture_on_disk_has_a_case():
    assert sorted(c[0] for c in CASES) == ON_DISK


@pytest.mark.unit
def test_every_fixture_in_one_process_is_findings_not_a_traceback(mmgitops_process):
    # The process contract, which in-process runs cannot see: an exception escaping main() prints a Traceback
    # and exits 1 like findings do. One process for all fixtures: about a second, where one each takes 20.
    proc = mmgitops_process("validate", *(f"{F}/{name}" for name in ON_DISK))
    assert (proc.returncode, proc.stderr) == (1, ""), proc.stderr
    assert "Traceback" not in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    findings, summary = lines[:-1], lines[-1]
    assert summary.endswith(f"; {len(findings)} finding(s)"), summary
    for fixture, file, obj, field, rule in CASES:
        expected_file = f"{F}/{fixture}/{file}" if file else f"{F}/{fixture}"
        assert any(line.startswith(f"{expected_file}: {obj}: {field}: ") and line.endswith(f"[{rule}]")
                   for line in findings), f"{fixture}: no [{rule}] finding\n{proc.stdout}"


@pytest.mark.unit
def test_every_policy_rule_is_broken_by_some_fixture(cli):
    run = cli("rules")
    assert (run.returned, run.code) == (True, 0), run.err
    listed = {line.split()[0] for line in run.lines}
    broken = {c[4] for c in CASES}
    assert listed <= broken, f"rules without a breaking fixture: {sorted(listed - broken)}"
