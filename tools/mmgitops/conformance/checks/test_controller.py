"""Controller: what modelmesh-serving writes of a model it cannot place, and of a runtime it brings up from zero.

Read from the InferenceService status, as a user reads `oc get isvc -o yaml`. Only a target with a controller has
these (cluster mode); on a mesh target they do not apply and are skipped with the reason.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest
import tenacity

from mmgitops.conformance.steps import Deployments
from mmgitops.conformance.target import FAILED, NO_RUNTIME, SampleRef, ScaleUp, ServiceStatus, Target, TargetError
from mmgitops.conformance.verdict import not_reached

pytestmark = pytest.mark.controller
UNSERVED_FORMAT = "mmconf-unserved"  # a model format no ServingRuntime lists
MISSING_RUNTIME = "mmconf-missing"  # a ServingRuntime that does not exist
FAIL_WAIT_S = 60.0


@pytest.fixture(scope="module")
def controller(target: Target) -> None:
    """Skip where no controller writes an InferenceService status."""
    try:
        target.service_status(f"{UNSERVED_FORMAT}-probe")
    except TargetError as error:
        if error.code == "UNIMPLEMENTED":
            pytest.skip(error.message)


@pytest.fixture(scope="module")
def scale_up(target: Target) -> ScaleUp:
    try:
        return target.scale_up()
    except TargetError as error:
        if error.code == "UNIMPLEMENTED":
            pytest.skip(error.message)
        not_reached(error.message)


def failed_status(target: Target, deployments: Deployments, name: str, sample: SampleRef,
                  runtime: str) -> ServiceStatus:
    """Deploy, and the status once the controller writes FailedToLoad (or the last one within the wait)."""
    deployed = deployments.deploy(name, sample, runtime=runtime)
    try:
        return tenacity.Retrying(stop=tenacity.stop_after_delay(FAIL_WAIT_S), wait=tenacity.wait_fixed(0.5),
                                 retry=tenacity.retry_if_result(lambda s: s.active_model_state != FAILED),
                                 )(target.service_status, deployed.name)
    except tenacity.RetryError as error:
        return error.last_attempt.result()


def test_a_format_no_runtime_serves_fails_to_load_with_no_supporting_runtime(target, deployments, controller):
    """modelmesh-serving registers a model that names no runtime with the type `mt:<format>`
    (controllers/modelmesh/model_type_labels.go GetPredictorTypeLabel). The tc-config it writes gives every type a
    runtime offers its own entry and all others `_default`, which requires the label `_no_runtime` that no pod has
    (controllers/modelmesh/cluster_config.go calculateConstraintData). ModelMesh refuses the load with a message
    ending in the labels required (ModelMesh.verifyLocalTypeConstraintsBeforeLoad), which the controller decodes as
    FailedToLoad with reason NoSupportingRuntime (controllers/predictor_controller.go decodeModelState)."""
    sample = replace(target.samples()[0], type=UNSERVED_FORMAT)
    status = failed_status(target, deployments, "unserved", sample, NO_RUNTIME)
    assert (status.active_model_state, status.failure_reason) == (FAILED, "NoSupportingRuntime"), asdict(status)


def test_an_inference_service_naming_a_missing_runtime_fails_to_load_with_runtime_not_recognized(
        target, deployments, controller):
    """A model that names a runtime is registered with the type `rt:<runtime>` (GetPredictorTypeLabel); a runtime
    that does not exist has no entry in tc-config, so the type falls to `_default` too, and decodeModelState tells it
    apart by the `rt:` prefix of the type in ModelMesh's message: FailedToLoad with reason RuntimeNotRecognized."""
    status = failed_status(target, deployments, "no-runtime", target.samples()[0], MISSING_RUNTIME)
    assert (status.active_model_state, status.failure_reason) == (FAILED, "RuntimeNotRecognized"), asdict(status)


def test_a_runtime_no_inference_service_uses_has_no_pods(scale_up, record):
    """With scaleToZero enabled (the default, and this repository's model-serving-config), the controller gives a
    runtime that no InferenceService uses 0 replicas; a runtime it has just met gets them at once, as its first
    reconcile counts the time without predictors from the zero time (controllers/servingruntime_controller.go
    determineReplicasAndRequeueDuration). Read before the target's first InferenceService was created."""
    record("scale_up", {"runtime": scale_up.runtime, "replicas_before": scale_up.replicas_before,
                        "replicas_after": scale_up.replicas_after, "loaded_after_s": scale_up.loaded_after_s,
                        "statuses": [f"{t:.1f} s: " + " ".join(filter(None, (s.active_model_state, s.failure_reason)))
                                     for t, s in scale_up.statuses]})
    assert scale_up.replicas_before == 0, (
        f"the controller gave runtime {scale_up.runtime} {scale_up.replicas_before} replicas before any "
        "InferenceService used it: is scaleToZero.enabled false in model-serving-config?")


def test_the_first_inference_service_scales_its_runtime_up_to_its_replicas(scale_up):
    """Once a predictor uses the runtime, the controller gives its Deployment the runtime's spec.replicas
    (determineReplicas; runtimeHasPredictors counts InferenceServices as predictors)."""
    assert scale_up.replicas_after == scale_up.replicas_wanted


def test_the_first_inference_service_is_never_failed_while_its_runtime_scales_up(scale_up):
    """While the runtime has no ready pod, the controller's SetVModel finds no ModelMesh address and it writes
    reason RuntimeUnhealthy, "Waiting for runtime Pod to become available", keeping the state it had
    (predictor_controller.go Reconcile, isNoAddresses), and retries every 3 s. ModelMesh's own refusal for want of a
    running pod of a runtime it knows ends in that runtime's labels, which decodeModelState turns into Loading with
    RuntimeUnhealthy, not a failure. The run's namespace is its own, so no pod of another runtime, holding an older
    tc-config, can answer in between (see docs/fidelity.md on the tc-config race)."""
    failures = [f"{t:.1f} s: {s.failure_reason}: {s.failure_message}" for t, s in scale_up.statuses
                if s.active_model_state == FAILED]
    assert failures == []
