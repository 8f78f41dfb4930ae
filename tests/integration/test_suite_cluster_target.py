"""The conformance suite's cluster target against a real API server: what a run creates, reads and removes.

The runtime pods themselves need a ModelMesh controller; these checks cover what the target does on its own:
its namespace, Secret and staged samples, objects the pinned CRDs accept without pruning a field the checks
rely on, the platform status it reads, and cleanup that touches labelled namespaces only.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from mmgitops.conformance import staging
from mmgitops.conformance.cluster import objects, session
from mmgitops.conformance.cluster.resolve import Annotation
from mmgitops.conformance.cluster.target import ClusterTarget
from mmgitops.lab.mesh.storage import S3Server
from mmgitops.modelmesh import storage

from tests.integration.conftest import mmgitops

pytestmark = pytest.mark.integration
RUN = "0c0ffe"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server.start(tmp_path_factory.mktemp("s3") / "s3.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def storage_config(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return storage.write_config(tmp_path_factory.mktemp("storage") / "storage.json",
                                {"localS3": s3.entry("localS3", "conformance")})


@pytest.fixture(scope="module")
def opened(cluster: dict, storage_config: Path) -> Iterator[session.Session]:
    run = session.Session(session.api_client(cluster["kubeconfig"]), RUN, storage_config, "localS3")
    run.open()
    yield run
    run.close()


def api(cluster: dict) -> client.ApiClient:
    return config.new_client_from_config(config_file=cluster["kubeconfig"])


def staged(s3: S3Server, run: str = RUN) -> list[str]:
    listed = storage.s3_client(s3.entry()).list_objects_v2(Bucket="conformance", Prefix=staging.sample_prefix(run))
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_the_run_namespace_carries_the_run_label_and_its_runner(opened):
    ns = opened.core.read_namespace(objects.namespace_name(RUN))
    assert ns.metadata.labels[objects.RUN_LABEL] == RUN
    assert ns.metadata.labels["modelmesh-enabled"] == "true"
    assert ns.metadata.annotations[objects.RUNNER_ANNOTATION] == session.runner()


def test_the_storage_secret_names_the_staging_bucket(opened):
    secret = opened.core.read_namespaced_secret(objects.STORAGE_SECRET, opened.namespace)
    entry = json.loads(base64.b64decode(secret.data["localS3"]))
    assert (secret.metadata.labels[objects.RUN_LABEL], entry["type"], entry["bucket"]) == (RUN, "s3", "conformance")


def test_samples_are_staged_under_the_run_prefix(opened, s3):
    assert staged(s3) == sorted(f"{staging.S3_PREFIX}/{RUN}/{s.name}/model.joblib" for s in opened.samples)
    assert [s.answer for s in opened.samples] == list(range(staging.SAMPLES))


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_the_crd_keeps_every_field_the_runtime_sets(opened, kind):
    template = objects.read_template("cpu")
    placement = objects.read_template("gpu")["spec"]
    body = objects.serving_runtime(template, f"conf-{kind}", opened.namespace, RUN, replicas=1, capacity_models=3,
                                   gpu=kind == "gpu", gpu_placement=placement)
    made = opened.custom.create_namespaced_custom_object("serving.kserve.io", "v1alpha1", opened.namespace,
                                                          "servingruntimes", body)
    spec = made["spec"]
    assert (spec["replicas"], spec["builtInAdapter"]["memBufferBytes"]) == (1, 2**30 - 4 * 8192)
    requests = spec["containers"][0]["resources"]["requests"]
    assert requests.get(objects.GPU) == ("1" if kind == "gpu" else None)
    assert ("nodeSelector" in spec) == (kind == "gpu")


def test_the_crd_keeps_the_inference_service_storage_and_mode(opened):
    sample = opened.samples[0]
    body = objects.inference_service("conf-storage", opened.namespace, RUN, "conf-cpu", "sklearn", "localS3",
                                     "conformance", sample.path)
    made = opened.custom.create_namespaced_custom_object("serving.kserve.io", "v1beta1", opened.namespace,
                                                          "inferenceservices", body)
    assert made["metadata"]["annotations"][objects.DEPLOYMENT_MODE] == "ModelMesh"
    assert made["spec"]["predictor"]["model"]["storage"] == {"key": "localS3", "path": sample.path,
                                                             "parameters": {"bucket": "conformance"}}


def test_the_platform_reads_the_dsc_and_the_controller(cluster, cluster_env, opened):
    # The profile a user installs first; applying it again changes nothing when an earlier test applied it.
    run = mmgitops("apply", "overlays/serving-gpu", "--kubeconfig", cluster["kubeconfig"], "--timeout", "120",
                   env=cluster_env)
    assert run.returncode == 0, run.stdout + run.stderr
    runtime = objects.serving_runtime(objects.read_template("cpu"), "conf-cpu", opened.namespace, RUN, 2, 3,
                                      gpu=False)
    platform = ClusterTarget(opened, runtime, 1500, Annotation(opened.core, opened.namespace)).platform()
    assert (platform.dsc, platform.dsc_conditions["Ready"], platform.dsc_conditions["ModelMeshServingReady"]) == (
        "default-dsc", "True", "True")
    assert (platform.controller, platform.controller_available) == (
        "redhat-ods-applications/modelmesh-controller", True)
    assert platform.runtime_containers == ["mm", "rest-proxy", "mlserver", "mlserver-adapter"]


def test_closing_the_run_removes_its_namespace_and_samples(cluster, storage_config, s3):
    run = session.Session(session.api_client(cluster["kubeconfig"]), "0d0d0d", storage_config, "localS3")
    run.open()
    assert run.close() == []
    listed = storage.s3_client(s3.entry()).list_objects_v2(Bucket="conformance", Prefix=f"{staging.S3_PREFIX}/0d0d0d/")
    assert listed.get("KeyCount") == 0
    gone_or_terminating(client.CoreV1Api(run.api), run.namespace)


def gone_or_terminating(core: client.CoreV1Api, name: str) -> None:
    try:
        ns = core.read_namespace(name)
    except ApiException as error:
        assert error.status == 404
        return
    assert ns.status.phase == "Terminating"


def labelled_namespace(core: client.CoreV1Api, name: str, runner: str | None, **annotations: str) -> None:
    metadata: dict = {"name": name, "labels": {objects.RUN_LABEL: name[-6:]} if runner is not None else {}}
    if runner:
        metadata["annotations"] = {objects.RUNNER_ANNOTATION: runner, **annotations}
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})


def cleanup(cluster: dict, cluster_env: dict, tmp_path: Path) -> list[str]:
    # An empty pytest temp root: this session's own local meshes are not what these tests look at.
    env = {**cluster_env, "PYTEST_DEBUG_TEMPROOT": str(tmp_path)}
    run = mmgitops("conform", "cleanup", "--kubeconfig", cluster["kubeconfig"], env=env)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def test_cleanup_removes_only_namespaces_the_suite_labelled_and_no_live_run_owns(cluster, cluster_env, opened,
                                                                                    tmp_path):
    core = client.CoreV1Api(api(cluster))
    labelled_namespace(core, "mmconf-dead01", "other-host:1")
    labelled_namespace(core, "mmconf-user01", None)  # a user's namespace, named alike but unlabelled
    # The local cluster serves projects, so the run (as the cluster's admin) asked for one: its live run is kept.
    assert cleanup(cluster, cluster_env, tmp_path) == [
        "removed namespace mmconf-dead01",
        f"kept project {opened.namespace}: a running suite owns it (pid {os.getpid()})"]
    gone_or_terminating(core, "mmconf-dead01")
    assert core.read_namespace("mmconf-user01").status.phase == "Active"
    assert core.read_namespace(opened.namespace).status.phase == "Active"
    core.delete_namespace("mmconf-user01")


def test_cleanup_removes_the_samples_a_killed_run_staged_and_no_others(cluster, cluster_env, opened, s3,
                                                                         storage_config, tmp_path):
    killed = session.Session(session.api_client(cluster["kubeconfig"]), "dead02", storage_config, "localS3")
    killed.open()
    # As if its process had died: the runner annotation of its Secret names no live process here.
    killed.core.patch_namespaced_secret(objects.STORAGE_SECRET, killed.namespace, {"metadata": {"annotations": {
        objects.RUNNER_ANNOTATION: "other-host:1"}}})
    samples, live_samples = staged(s3, "dead02"), staged(s3)
    assert samples and live_samples
    lines = cleanup(cluster, cluster_env, tmp_path)
    assert lines[:2] == [f"removed {len(samples)} sample objects from s3://conformance/{staging.sample_prefix('dead02')}",
                         "removed project mmconf-dead02"]
    assert staged(s3, "dead02") == []
    assert staged(s3) == live_samples
    gone_or_terminating(killed.core, "mmconf-dead02")


def test_cleanup_names_the_samples_it_cannot_remove_and_still_removes_the_namespace(cluster, cluster_env, opened,
                                                                                     tmp_path):
    core = client.CoreV1Api(api(cluster))
    labelled_namespace(core, "mmconf-dead03", "other-host:1", **{objects.SAMPLES_ANNOTATION: "localS3"})
    lines = cleanup(cluster, cluster_env, tmp_path)
    assert lines[:1] == ["removed namespace mmconf-dead03"]
    assert ("left the samples of run dead03 (storage 'localS3', prefix mmgitops-conformance/dead03/): "
            "cannot read secret mmconf-dead03/storage-config: 404 Not Found; pass --storage-config FILE") in lines
    gone_or_terminating(core, "mmconf-dead03")
