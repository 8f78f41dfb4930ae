"""One instance process, as a ModelMesh pod runs it: model server, runtime adapter, mesh, REST proxy, metrics.

Started by `mmgitops local mesh up` as `python -m mmgitops.lab.mesh.serve --config FILE`; SIGTERM stops it
cleanly (its copies leave the registry at once), SIGKILL the way a node failure would.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from mmgitops.lab.mesh import adapter, api, constraints, metrics, modelserver, rest, sizing, storage
from mmgitops.lab.mesh.faults import Faults
from mmgitops.lab.mesh.instance import Instance, Settings
from mmgitops.lab.mesh.peers import Peers
from mmgitops.lab.mesh.registry import Registry
from mmgitops.modelmesh import stubs

runtime_pb, runtime_grpc = stubs.runtime()
_, mesh_grpc = stubs.mesh()
_, v2_grpc = stubs.v2()


@dataclass
class InstanceConfig:
    """What `up` writes for each instance. Ports are not in it: the instance binds free ones itself on
    127.0.0.1 (no other process can take them between choice and bind) and writes them to ports.json."""

    instance_id: str
    etcd: str
    prefix: str
    work_dir: str
    capacity_bytes: int
    min_churn_age_ms: int
    load_timeout_ms: int
    max_loading_concurrency: int
    storage_config: str = ""
    etcd_connection: str = ""  # a pod's mounted etcd_connection: the user and password etcd asks for, if any
    faults: list[str] = field(default_factory=list)
    default_model_size_bytes: int = sizing.DEFAULT_MODEL_SIZE_BYTES  # the adapter's DEFAULT_MODELSIZE
    lease_ttl_s: int = 3
    warmup_model: str = ""  # a local sklearn model file
    # MM_LABELS: by default those modelmesh-serving gives the built-in mlserver-1.x runtime's pods
    labels: list[str] = field(default_factory=lambda: list(constraints.runtime_labels()))
    constraints_file: str = ""  # MM_TYPE_CONSTRAINTS_PATH: the pod's mounted tc-config


def warm_up(runtime: grpc.Channel, model_path: str) -> None:
    """Load and unload one small model before taking traffic, so that the first real load does not pay for
    MLServer importing its sklearn runtime (a second or more); a ModelMesh pod's runtime starts warm too."""
    stub = runtime_grpc.ModelRuntimeStub(runtime)
    stub.loadModel(runtime_pb.LoadModelRequest(modelId="warmup", modelType="sklearn", modelPath=model_path),
                   timeout=60)
    stub.unloadModel(runtime_pb.UnloadModelRequest(modelId="warmup"), timeout=60)


def run(config: InstanceConfig) -> None:
    work = Path(config.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())

    server = modelserver.start(work / "models", work / "mlserver.log", own_group=False)
    # The model server's own endpoint, for `bench mesh` to compare the mesh against it.
    (work / "runtime.json").write_text(json.dumps({"grpc": server.grpc_target}), encoding="utf-8")
    puller = storage.Puller(Path(config.storage_config)) if config.storage_config else None
    spi = adapter.serve(adapter.Adapter(server, adapter.RuntimeConfig(
        capacity_bytes=config.capacity_bytes, max_loading_concurrency=config.max_loading_concurrency,
        loading_timeout_ms=config.load_timeout_ms, default_model_size_bytes=config.default_model_size_bytes),
        puller=puller, download_root=work / "pulled"),
        0)
    runtime = grpc.insecure_channel(f"127.0.0.1:{spi.port}")
    if config.warmup_model:
        warm_up(runtime, config.warmup_model)
    # As ModelMesh does at startup, take the cache parameters from the runtime's own status.
    status = runtime_grpc.ModelRuntimeStub(runtime).runtimeStatus(runtime_pb.RuntimeStatusRequest(), timeout=30)
    # ModelMesh refuses to start on figures it cannot work with (ModelMesh.initialize / setupMemory).
    try:
        sizing.check_startup(int(status.capacityInBytes), int(status.maxLoadingConcurrency),
                             int(status.modelLoadingTimeoutMs), int(status.defaultModelSizeInBytes))
    except sizing.StartupError:
        spi.stop(0)
        server.stop()
        raise
    faults = Faults.parse(config.faults)
    mesh_metrics = metrics.MeshMetrics()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="mesh"),
                              options=[("grpc.max_receive_message_length", 16 * 2**20),
                                       ("grpc.so_reuseport", 0)])
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    if grpc_port == 0:
        raise OSError("cannot bind a gRPC port on 127.0.0.1")
    instance = Instance(Settings(
        config.instance_id, f"127.0.0.1:{grpc_port}", int(status.capacityInBytes), config.min_churn_age_ms,
        int(status.modelLoadingTimeoutMs), int(status.maxLoadingConcurrency), config.lease_ttl_s,
        tuple(config.labels), int(status.defaultModelSizeInBytes), config.constraints_file),
        Registry(config.etcd, config.prefix, config.etcd_connection), runtime, Peers(), mesh_metrics, faults)
    instance.start()

    def ready() -> bool:
        return not stopping.is_set() and server.process.poll() is None

    data = grpc.insecure_channel(server.grpc_target)
    v2_grpc.add_GRPCInferenceServiceServicer_to_server(api.Inference(instance, data), grpc_server)
    mesh_grpc.add_ModelMeshServicer_to_server(api.Management(instance), grpc_server)
    grpc_server.start()
    probes = metrics.serve(mesh_metrics, 0, 0, ready, lambda: not stopping.is_set())
    proxy = rest.start(f"127.0.0.1:{grpc_port}", 0)
    ports = {"grpc": grpc_port, "rest": proxy.port, "metrics": probes.metrics_port, "probes": probes.probe_port}
    # Written last and renamed into place: `up` takes the file's presence to mean every port is bound.
    (work / "ports.json.tmp").write_text(json.dumps(ports), encoding="utf-8")
    (work / "ports.json.tmp").rename(work / "ports.json")

    stopping.wait()
    instance.stop()
    grpc_server.stop(2).wait()
    proxy.stop()
    probes.stop()
    spi.stop(1)
    server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmgitops.lab.mesh.serve", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="the instance's JSON config, written by `up`")
    args = parser.parse_args(argv)
    try:
        run(InstanceConfig(**json.loads(args.config.read_text(encoding="utf-8"))))
    except sizing.StartupError as exc:
        print(f"modelmesh refused to start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
