"""One instance with room for three models: ModelMesh's LRU eviction, churn guard and cache misses,
then `down` with nothing left behind."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from mmgitops.modelmesh.defaults import UNIT_BYTES

from tests.mesh.conftest import Mesh, Status, local_mesh, mmgitops, rpc_error, wait_for

pytestmark = pytest.mark.mesh
CHURN_MS = 1500
# ModelMesh refuses a cache below ~10 default-size models (10 MB). 12 MiB is 1536 units, less a 123-unit
# unload buffer: 1413 units, "full" below 123 free. Models of 2.88 MB weigh ~440 units (x 1.25): three fit
# and leave the instance full, a fourth needs an eviction.
CAPACITY = 12 * 2**20
PAD_BYTES = 2_880_000


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with local_mesh(tmp_path_factory.mktemp("mesh"), "test-eviction", "--instances", "1", "--samples", "1",
                    "--no-register", "--capacity", str(CAPACITY), "--min-churn-age-ms", str(CHURN_MS)) as running:
        running.big = running.upload_padded(tmp_path_factory.mktemp("padded"), 4, PAD_BYTES)
        yield running


def loaded(mesh: Mesh, *model_ids: str) -> list[bool]:
    return [mesh.status(m).status == Status.LOADED for m in model_ids]


def evictions(mesh: Mesh) -> float:
    return mesh.sample_value(0, "modelmesh_age_at_eviction_milliseconds_count")


def past_churn_age() -> None:
    time.sleep(CHURN_MS / 1000 + 0.2)


def test_a_capacity_below_ten_default_models_is_refused_before_anything_starts(tmp_path):
    env = {**os.environ, "MMGITOPS_MESH_NAME": "test-eviction-small", "MMGITOPS_STATE": str(tmp_path)}
    result = mmgitops("local", "mesh", "up", "--capacity", str(3 * UNIT_BYTES), env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    # Below 10 MB the default model size is a tenth of the capacity, at least one unit (ModelMesh's message
    # rounds its 8 KiB to 0 MiB): three units are still less than ten of them.
    assert "Reported model capacity 0.000GiB too small relative to advertised default model size of 0MiB" \
        in result.stderr and "(at least 81920 bytes)" in result.stderr
    assert not (tmp_path / "mesh-test-eviction-small").exists()


def test_a_never_used_model_is_evicted_first(mesh):
    a, b, c = (mesh.register(f"lru-{n}", mesh.big[i]) for i, n in enumerate("abc"))
    assert loaded(mesh, a, b, c) == [True, True, True]
    mesh.infer("lru-a")
    mesh.infer("lru-c")
    past_churn_age()
    before = evictions(mesh)
    d = mesh.register("lru-d", mesh.big[3])
    # b was registered and loaded but never used: it counts as used an hour ago.
    assert loaded(mesh, a, b, c, d) == [True, False, True, True]
    assert mesh.status(b).status == Status.NOT_LOADED and not mesh.status(b).modelCopyInfos
    assert evictions(mesh) == before + 1
    mesh.model_ids = (a, b, c, d)


def test_eviction_then_follows_least_recent_use_and_a_miss_reloads(mesh):
    a, b, c, d = mesh.model_ids
    mesh.infer("lru-c")
    mesh.infer("lru-d")
    past_churn_age()
    # b is Standby: the request blocks while it loads, succeeds, and evicts a, the least recently used.
    assert mesh.infer("lru-b") == (1, b)
    assert loaded(mesh, a, b, c, d) == [False, True, True, True]
    # The gauges show the published record: read them with a bounded wait (a publish can lag up to 40 s).
    wait_for("the published model count", lambda: mesh.sample_value(0, "modelmesh_instance_models_total") == 3,
             timeout=60)
    assert mesh.sample_value(0, "modelmesh_instance_used_bytes") <= mesh.sample_value(
        0, "modelmesh_instance_capacity_bytes")


def test_the_churn_guard_refuses_a_load_on_a_full_instance_with_internal(mesh):
    a, b, c, d = mesh.model_ids
    for vmodel in ("lru-b", "lru-c", "lru-d"):
        mesh.infer(vmodel)
    error = rpc_error(lambda: mesh.infer("lru-a"))
    # a ModelLoadException, which ModelMeshApi.toStatus turns into INTERNAL
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "Cache churn threshold exceeded"
    assert loaded(mesh, a, b, c, d) == [False, True, True, True]
    past_churn_age()
    assert mesh.infer("lru-a") == (0, a)
    assert loaded(mesh, a)[0]


def _group_members(pgids: set[int]) -> set[int]:
    members = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) in pgids and fields[0] != "Z":
                members.add(int(proc.name))
    return members


def test_down_leaves_no_process_or_port_behind(mesh):
    state = mesh.state
    groups = {i["pid"] for i in state["instances"]} | {state["etcd"]["pid"], state["s3"]["pid"]}
    before = _group_members(groups)
    assert len(before) >= 4  # instance, its MLServer, etcd, moto
    ports = [int(i[key].rsplit(":", 1)[1].split("/")[0]) for i in state["instances"] for key in ("grpc", "rest")]
    down = mmgitops("local", "mesh", "down", env=mesh.env)
    assert down.returncode == 0 and "stopped instance mm-0" in down.stdout
    assert _group_members(groups) == set()
    assert not any(os.path.exists(f"/proc/{pid}") and _group_members({pid}) for pid in before)
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
    assert mmgitops("local", "mesh", "status", env=mesh.env).stdout.strip() == "no local mesh"
