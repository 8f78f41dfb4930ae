"""A real MLServer process on loopback, started and stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from mlserver.grpc import dataplane_pb2, dataplane_pb2_grpc

from mmgitops.errors import ToolError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ModelServer:
    models_dir: Path
    grpc_port: int
    http_port: int
    metrics_port: int
    process: subprocess.Popen[bytes]

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start(models_dir: Path, log: Path, timeout: float = 60.0) -> ModelServer:
    """MLServer with no worker pool (parallel_workers 0: ready in seconds, no event-loop trouble)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    ports = {"grpc": free_port(), "http": free_port(), "metrics": free_port()}
    env = {
        **os.environ,
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_GRPC_PORT": str(ports["grpc"]),
        "MLSERVER_HTTP_PORT": str(ports["http"]),
        "MLSERVER_METRICS_PORT": str(ports["metrics"]),
        "MLSERVER_PARALLEL_WORKERS": "0",
        "MLSERVER_LOAD_MODELS_AT_STARTUP": "false",
        "MLSERVER_MODEL_REPOSITORY_ROOT": str(models_dir),
        "MLSERVER_DEBUG": "false",
    }
    mlserver = Path(sys.executable).parent / "mlserver"
    with log.open("ab") as out:
        process = subprocess.Popen([str(mlserver), "start", str(models_dir)], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = ModelServer(models_dir, ports["grpc"], ports["http"], ports["metrics"], process)
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ToolError(f"MLServer exited with {process.returncode} at startup (log: {log})")
            try:
                if stub.ServerReady(dataplane_pb2.ServerReadyRequest(), timeout=1).ready:
                    return server
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    server.stop()
    raise ToolError(f"MLServer not ready after {timeout:.0f} s (log: {log})")
