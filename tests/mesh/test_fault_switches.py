"""The test-only fault switches really break what they name, end to end; off, nothing is broken
(every other test in this tier runs with them off)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest

from tests.mesh.conftest import Mesh, local_mesh, mmgitops, rpc_error

pytestmark = pytest.mark.mesh


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with local_mesh(tmp_path_factory.mktemp("mesh"), "test-faults", "--instances", "2", "--samples", "2",
                    "--no-register", "--fault", "wrong-model", "--fault", "no-forward") as running:
        yield running


def test_wrong_model_answers_with_another_model(mesh):
    model_a = mesh.register("isvc-a", "sample-00")
    model_b = mesh.register("isvc-b", "sample-01")
    # Sent where the wrong model lives, so that no-forward, also on here, stays out of the way.
    holder = mesh.ids().index(mesh.status(model_b).modelCopyInfos[0].location)
    assert mesh.infer("", holder, metadata=(("mm-model-id", model_a),)) == (1, model_b)


def test_no_forward_refuses_requests_entering_an_instance_without_a_copy(mesh):
    model_id = mesh.register("isvc-c", "sample-01", instance=1)
    # wrong-model is on here too: a request is served as the first other registered model, isvc-a's. It enters
    # where that model has no copy, so that serving it needs a forward.
    served = mesh.register("isvc-a", "sample-00")
    entering = 1 - mesh.ids().index(mesh.status(served).modelCopyInfos[0].location)
    error = rpc_error(lambda: mesh.infer("", entering, metadata=(("mm-model-id", model_id),)))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_status_names_the_switches_that_are_on(mesh):
    out = mmgitops("local", "mesh", "status", env=mesh.env).stdout
    assert "FAULTS ON: wrong-model, no-forward" in out


def test_an_unknown_switch_is_refused_before_anything_starts(tmp_path):
    env = {**os.environ, "MMGITOPS_MESH_NAME": "test-faults-bad", "MMGITOPS_STATE": str(tmp_path)}
    result = mmgitops("local", "mesh", "up", "--fault", "slow-evict", env=env)
    assert result.returncode == 2 and "invalid choice: 'slow-evict'" in result.stderr
    assert not (tmp_path / "mesh-test-faults-bad").exists()
