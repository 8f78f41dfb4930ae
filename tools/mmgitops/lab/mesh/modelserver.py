"""A real MLServer process on loopback, started and stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from mmgitops.errors import ToolError
from mmgitops.lab.ports import free_port, retry_port_clash
from mmgitops.lab.spawn import die_with_parent, spawn
from mmgitops.modelmesh import stubs

v2_pb, v2_grpc = stubs.v2()


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
            # Its own group when it has one (MLServer may fork helpers), else just the process.
            group = os.getpgid(self.process.pid) != os.getpgrp()
            kill = (lambda sig: os.killpg(self.process.pid, sig)) if group else self.process.send_signal
            kill(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                kill(signal.SIGKILL)
                self.process.wait()


def start(models_dir: Path, log: Path, timeout: float = 60.0, own_group: bool = True) -> ModelServer:
    """MLServer with no worker pool (parallel_workers 0: ready in seconds, no event-loop trouble).

    own_group False keeps it in the caller's process group and ties its life to the caller's. A port
    taken by another process between choice and bind is retried with new ports, twice."""
    models_dir.mkdir(parents=True, exist_ok=True)
    return retry_port_clash(lambda: _start_once(models_dir, log, timeout, own_group), log)


def _start_once(models_dir: Path, log: Path, timeout: float, own_group: bool) -> ModelServer:
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
    # Not in a group of its own, it is the instance's container: it dies with the instance.
    process = spawn([mlserver, "start", models_dir], log, env=env, own_group=own_group,
                    preexec_fn=None if own_group else die_with_parent)
    server = ModelServer(models_dir, ports["grpc"], ports["http"], ports["metrics"], process)
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ToolError(f"MLServer exited with {process.returncode} at startup (log: {log})")
            try:
                if stub.ServerReady(v2_pb.ServerReadyRequest(), timeout=1).ready:
                    return server
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    server.stop()
    raise ToolError(f"MLServer not ready after {timeout:.0f} s (log: {log})")
