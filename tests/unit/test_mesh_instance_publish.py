"""An instance's gauges and its peers see the PUBLISHED record, republished on ModelMesh's clock."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from mmgitops.lab.mesh.faults import Faults
from mmgitops.lab.mesh.instance import Instance, Settings
from mmgitops.lab.mesh.metrics import MeshMetrics
from mmgitops.lab.mesh.peers import Peers
from mmgitops.lab.mesh.registry import InstanceRecord

pytestmark = pytest.mark.unit
T0 = 1_000_000_000


class FakeRegistry:
    """What an instance asks of its registry to publish: the published records are kept in order."""

    def __init__(self) -> None:
        self.published: list[InstanceRecord] = []
        self.table: dict[str, InstanceRecord] = {}

    def lease(self, ttl: int) -> object:
        return object()

    def on_change(self, listener: Any) -> None:
        pass

    def put_instance(self, instance_id: str, record: InstanceRecord, lease: Any) -> None:
        self.published.append(record)
        self.table[instance_id] = record

    def instances(self) -> dict[str, InstanceRecord]:
        return dict(self.table)


def gauge(metrics: MeshMetrics, name: str) -> float:
    return next(s.value for f in metrics.families() for s in f.samples if s.name == name)


def test_gauges_follow_published_records_not_the_live_cache():
    now = [T0]
    metrics = MeshMetrics()
    registry = FakeRegistry()
    instance = Instance(Settings("mm-0", "127.0.0.1:1", 64 * 2**20), registry,  # type: ignore[arg-type]
                        grpc.insecure_channel("127.0.0.1:1"), Peers(), metrics, Faults(), clock=lambda: now[0])
    instance.publish(force=True, first=True)
    assert gauge(metrics, "modelmesh_instance_models_total") == 0
    assert gauge(metrics, "modelmesh_instance_capacity_bytes") == (8192 - 123) * 8192
    instance.cache.reserve("m", 500_000, T0)
    now[0] = T0 + 1_000
    assert not instance.publish(force=True)  # within 2 s of the last publish
    assert gauge(metrics, "modelmesh_instance_models_total") == 0 and len(registry.published) == 1
    now[0] = T0 + 2_000
    assert instance.publish(force=True)
    assert gauge(metrics, "modelmesh_instance_models_total") == 1
    assert registry.instances()["mm-0"].models == 1
    instance.cache.remove("m")
    now[0] = T0 + 10_000
    assert not instance.publish(force=False)  # the periodic task waits for 39 s
    now[0] = T0 + 41_000
    assert instance.publish(force=False)
    assert gauge(metrics, "modelmesh_instance_models_total") == 0
