"""`validate --cluster` hands the rules a Secret's shape, never its values."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest
from mmgitops.gitops.checks.modelmesh import live
from mmgitops.gitops.checks.modelmesh.context import storage_entries

pytestmark = pytest.mark.unit
SECRET = "FAKE-SECRET-0f0f-not-real"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(data: dict[str, str], labels: dict[str, str] | None = None) -> SimpleNamespace:
    meta = SimpleNamespace(name="storage-config", namespace="models", labels=labels, annotations=None)
    return SimpleNamespace(metadata=meta, data={k: b64(v) for k, v in data.items()})


def test_a_storage_entry_keeps_its_fields_types_and_storage_type_and_loses_every_value():
    entry = {"type": "s3", "access_key_id": SECRET, "secret_access_key": SECRET, "endpoint_url": "http://s3",
             "region": "r", "anonymous": True, "headers": {"a": SECRET}}
    obj = live._secret(secret({"localS3": json.dumps(entry), "odd": "[1]", "raw": SECRET}), "cluster", entries=True)
    assert SECRET not in json.dumps(obj.body) and SECRET not in base64.b64decode(obj.body["data"]["localS3"]).decode()
    read = storage_entries(obj)
    assert read["localS3"].type == "s3"
    assert read["localS3"].fields == {"type": "string", "access_key_id": "string", "secret_access_key": "string",
                                      "endpoint_url": "string", "region": "string", "anonymous": "boolean",
                                      "headers": "object"}
    assert read["odd"].shape and read["raw"].shape == "is not JSON"


def test_a_data_connection_keeps_its_key_names_only():
    obj = live._secret(secret({"AWS_ACCESS_KEY_ID": SECRET, "AWS_S3_BUCKET": "b"}), "cluster", entries=False)
    assert sorted(obj.body["data"]) == ["AWS_ACCESS_KEY_ID", "AWS_S3_BUCKET"]
    assert SECRET not in json.dumps(obj.body)


def test_with_a_cluster_a_missing_context_is_missing_from_both_places(tmp_path):
    import yaml
    from mmgitops.gitops import render, validate
    from mmgitops.gitops.schemas import catalog

    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m", "namespace": "team", "annotations": {
                "serving.kserve.io/deploymentMode": "ModelMesh"}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"},
                                             "storage": {"key": "s3", "path": "m.joblib"}}}}}
    (tmp_path / "isvc.yaml").write_text(yaml.safe_dump(isvc), encoding="utf-8")
    asked: list[set[str]] = []
    result = validate.validate([tmp_path / "isvc.yaml"], catalog.build(), render.find_kubectl(),
                               live=lambda namespaces: asked.append(namespaces) or [])
    messages = [f.message for f in result.findings if f.rule.startswith("mm-")]
    assert asked == [{"team"}]
    assert messages and all("this repository or on the cluster" in m for m in messages if "defined in" in m)
    assert any("defined in this repository or on the cluster" in m for m in messages), messages
