"""Routing: a request reaches the model it names, by name, header or REST, through any pod; errors as ModelMesh's."""

from __future__ import annotations

import re

import pytest

from mmgitops.conformance.steps import Deployments, distinct_samples, wait_for_state
from mmgitops.conformance.target import LOADED, Deployed, Target, TargetError

pytestmark = pytest.mark.routing
MODELS = 3


@pytest.fixture(scope="module")
def models(target: Target, deployments: Deployments) -> list[Deployed]:
    made = [deployments.deploy(f"route-{i}", sample) for i, sample in enumerate(distinct_samples(target, MODELS))]
    for model in made:
        wait_for_state(target, model.name, LOADED)
    return made


def refused(call) -> TargetError:
    with pytest.raises(TargetError) as caught:
        call()
    return caught.value


def test_each_model_answers_its_own_prediction_by_model_name(target, models):
    results = [target.infer(m.name) for m in models]
    assert [(r.answer, r.model_id) for r in results] == [(m.sample.answer, m.model_id) for m in models]


def test_the_mm_vmodel_id_header_routes_with_an_empty_model_name(target, models):
    results = [target.infer("", headers=[("mm-vmodel-id", m.name)]) for m in models]
    assert [(r.answer, r.model_id) for r in results] == [(m.sample.answer, m.model_id) for m in models]


def test_rest_infer_answers_by_name(target, models):
    results = [target.infer_rest(m.name) for m in models]
    assert [(r.answer, r.model_id) for r in results] == [(m.sample.answer, m.model_id) for m in models]


def test_both_model_headers_are_invalid_argument(target, models):
    model = models[0]
    error = refused(lambda: target.infer("", headers=[("mm-vmodel-id", model.name), ("mm-model-id", model.model_id)]))
    assert error.code == "INVALID_ARGUMENT"


def test_an_unknown_name_is_not_found(target, models, deployments):
    error = refused(lambda: target.infer(f"{deployments.prefix}-never-deployed"))
    assert error.code == "NOT_FOUND"


def test_every_model_answers_through_every_pod(target, models):
    pods = target.pods()
    seen = {(pod, m.name): (r.answer, r.model_id) for pod in pods for m in models
            for r in [target.infer(m.name, pod=pod)]}
    assert seen == {(pod, m.name): (m.sample.answer, m.model_id) for pod in pods for m in models}


def test_the_response_names_the_concrete_model_id(target, models):
    for model in models:
        named = target.infer(model.name).model_id
        assert named == model.model_id
        assert re.fullmatch(rf"{re.escape(model.name)}__isvc-[0-9a-f]{{10}}", named), named
