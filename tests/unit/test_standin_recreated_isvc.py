"""The ModelMesh controller stand-in on an InferenceService deleted and created again between two of its passes:
the new object starts from a new vmodel (deleteVModel, then setVModel with loadNow), as the controller's delete
event would give it, instead of being taken for the old one that had failed to load."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from mmgitops.lab.standins.modelmesh import controller as controller_mod
from mmgitops.lab.standins.modelmesh import predictor
from mmgitops.lab.standins.modelmesh.status import CopyInfo, ModelView, VModelView
from mmgitops.modelmesh import ids

pytestmark = pytest.mark.unit
NS, NAME = "modelmesh-models", "sklearn-mnist"
LABELS = ("mt:sklearn", "pv:grpc-v2", "rt:mlserver-1.x")


def isvc(uid: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": NAME, "namespace": NS, "uid": uid, "generation": 1,
                         "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "runtime": "mlserver-1.x",
                                             "storage": {"key": "localMinIO", "path": "sklearn/mnist-svm.joblib"}}}}}
    if status is not None:
        body["status"] = status
    return body


@dataclass
class Pod:
    labels: tuple[str, ...] = LABELS

    def channel(self) -> object:
        return object()


@dataclass
class Mesh:
    """What the stand-in asks its namespace's mesh, and a fixed view of the vmodel."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    state: str = "LOADING_FAILED"

    def view(self, model_id: str) -> VModelView:
        errors = ("could not connect to minio.minio.svc",) if self.state == "LOADING_FAILED" else ()
        model = ModelView(self.state, errors, (CopyInfo("pod-a", self.state, 1_700_000_000_000),))
        return VModelView("TRANSITION_FAILED" if errors else "DEFINED", model_id, model_id, model)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(controller_mod.meshcalls, "fingerprint", lambda _channel, _name: b"same")
        monkeypatch.setattr(controller_mod.meshcalls, "delete_vmodel",
                            lambda _channel, name: self.calls.append(("delete", name)))

        def set_vmodel(_channel: object, found: predictor.Predictor, model_id: str, load: bool) -> VModelView:
            self.calls.append(("set", load))
            return self.view(model_id)

        monkeypatch.setattr(controller_mod.meshcalls, "set_vmodel", set_vmodel)


class Kube:
    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []

    def patch_status(self, obj: dict[str, Any], plural: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)


def reconcile(control: controller_mod.Controller, kube: Kube, body: dict[str, Any]) -> None:
    table = {"rt:mlserver-1.x": ("rt:mlserver-1.x",)}
    control._inference_service(kube, NS, body, predictor.build(body), [Pod()], table)


def test_a_recreated_inference_service_gets_a_new_vmodel_and_a_load(monkeypatch, tmp_path):
    mesh, kube = Mesh(), Kube()
    mesh.install(monkeypatch)
    control = controller_mod.Controller(tmp_path, engine="embedded")
    reconcile(control, kube, isvc("uid-1"))
    assert mesh.calls == [("set", True)]
    failed = kube.statuses[-1]
    assert failed["modelStatus"]["states"]["activeModelState"] == "FailedToLoad"

    # The same object, its failure recorded and the mesh unchanged: nothing to do (and no reload within
    # ModelMesh's load failure expiry).
    mesh.calls.clear()
    reconcile(control, kube, isvc("uid-1", failed))
    assert mesh.calls == []

    # Deleted and created again (a new uid, no status yet) before the stand-in's next pass: a new vmodel.
    mesh.state = "LOADED"
    reconcile(control, kube, isvc("uid-2"))
    assert mesh.calls == [("delete", NAME), ("set", True)]
    assert kube.statuses[-1]["modelStatus"]["states"]["activeModelState"] == "Loaded"
    assert control.registered[(NS, NAME)].uid == "uid-2"
    assert control.registered[(NS, NAME)].model_id == ids.concrete_id(NAME, "sklearn/mnist-svm.joblib")
