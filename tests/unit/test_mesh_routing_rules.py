"""Type constraints, model ids from headers, registration last-used times and the adapter's model format."""

from __future__ import annotations

import grpc
import pytest
from mmgitops.lab.mesh import constraints
from mmgitops.lab.mesh.adapter import model_format_of
from mmgitops.lab.mesh.api import ids_from_headers
from mmgitops.lab.mesh.errors import MeshError
from mmgitops.lab.mesh.registry import initial_last_used

pytestmark = pytest.mark.unit
HOUR = 3_600_000
NOW = 100 * HOUR


def test_mlserver_pods_carry_the_labels_modelmesh_serving_gives_them():
    assert constraints.runtime_labels() == (
        "mt:lightgbm", "mt:lightgbm:3", "mt:sklearn", "mt:sklearn:0", "mt:xgboost", "mt:xgboost:1",
        "pv:grpc-v2", "pv:v2", "rt:mlserver-1.x")


def test_type_labels_need_their_runtime_and_other_types_need_no_runtime():
    table = constraints.constraints_for(constraints.runtime_labels())
    pods = {"mm-0": constraints.runtime_labels(), "other": ("mt:onnx", "rt:ovms-1.x")}
    assert constraints.candidates("mt:sklearn", table, pods) == {"mm-0"}
    assert constraints.candidates("mt:sklearn:0|pv:grpc-v2", table, pods) == {"mm-0"}
    assert constraints.candidates("rt:mlserver-1.x", table, pods) == {"mm-0"}
    assert constraints.candidates("sklearn", table, pods) == set()
    assert constraints.no_instance_message("sklearn", table) == (
        "There are no running instances that meet the label requirements of type sklearn: [_no_runtime]")


def test_a_mounted_tc_config_is_read_again_when_the_kubelet_swaps_it(tmp_path):
    """The kubelet's AtomicWriter layout: the key links through `..data` to a timestamped directory."""
    def publish(stamp: str, text: str) -> None:
        (tmp_path / stamp).mkdir()
        (tmp_path / stamp / "type_constraints").write_text(text)
        (tmp_path / "..data_tmp").symlink_to(stamp)
        (tmp_path / "..data_tmp").rename(tmp_path / "..data")

    mounted = tmp_path / "type_constraints"
    watched = constraints.ConstraintsFile(str(mounted))
    assert watched.read() is None  # nothing mounted yet
    publish("..1", '{"rt:a": {"required": ["rt:a"]}, "_default": {"required": ["_no_runtime"]}}')
    mounted.symlink_to("..data/type_constraints")
    first = {"rt:a": ("rt:a",), "_default": ("_no_runtime",)}
    assert watched.read() == first
    assert constraints.no_instance_message("rt:b", first).endswith("rt:b: [_no_runtime]")
    publish("..2", '{"rt:a": {"required": ["rt:a"]}, "rt:b": {"required": ["rt:b"]}, '
                   '"_default": {"required": ["_no_runtime"]}}')
    assert constraints.no_instance_message("rt:b", watched.read()).endswith("rt:b: [rt:b]")
    publish("..3", "{not json")
    assert watched.read()["rt:b"] == ("rt:b",)  # a broken file leaves the last table in force


def _code(metadata: dict[str, object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(MeshError) as caught:
        ids_from_headers(metadata)
    return caught.value.code, str(caught.value)


def test_header_ids_follow_get_model_ids_from_headers():
    assert ids_from_headers({"mm-model-id": "m"}) == ("m", False)
    assert ids_from_headers({"mm-vmodel-id-bin": b"v"}) == ("v", True)
    assert _code({}) == (grpc.StatusCode.INVALID_ARGUMENT, "must include mm-model-id header")
    assert _code({"mm-model-id": "m", "mm-vmodel-id": "v"}) == (
        grpc.StatusCode.INVALID_ARGUMENT, "must include only one of model id and vmodel id")
    assert _code({"mm-model-id": ""})[1] == "provided model-id header must be non-empty"


def test_a_registration_counts_as_used_one_hour_ago_with_load_now_and_six_without():
    assert initial_last_used(0, True, NOW) == NOW - HOUR
    assert initial_last_used(0, False, NOW) == NOW - 6 * HOUR
    assert initial_last_used(NOW - 5, False, NOW) == NOW - 5
    assert initial_last_used(NOW + 5, True, NOW) == NOW


def test_the_adapter_reads_the_format_from_the_key_or_the_type_label():
    assert model_format_of("mt:sklearn", "") == "sklearn"
    assert model_format_of("mt:xgboost:1|pv:grpc-v2", "{}") == "xgboost"
    assert model_format_of("rt:mlserver-1.x", '{"model_type": {"name": "lightgbm"}}') == "lightgbm"
    assert model_format_of("sklearn", "not json") == "sklearn"
