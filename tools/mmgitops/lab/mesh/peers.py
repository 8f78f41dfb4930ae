"""Channels to the other instances of the mesh, one per endpoint, kept open for the request path."""

from __future__ import annotations

import threading

import grpc

from mmgitops.modelmesh import stubs

mesh_pb, mesh_grpc = stubs.mesh()
_, v2_grpc = stubs.v2()

# Set on a call from one instance to another: the receiver serves or loads the model itself
# instead of routing again, so a request crosses at most one hop.
LOCAL_HEADER = "mm-internal-local"


class Peers:
    def __init__(self) -> None:
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def channel(self, endpoint: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(endpoint)
            if channel is None:
                channel = self._channels[endpoint] = grpc.insecure_channel(endpoint)
            return channel

    def inference(self, endpoint: str) -> v2_grpc.GRPCInferenceServiceStub:
        return v2_grpc.GRPCInferenceServiceStub(self.channel(endpoint))

    def mesh(self, endpoint: str) -> mesh_grpc.ModelMeshStub:  # type: ignore[name-defined]
        return mesh_grpc.ModelMeshStub(self.channel(endpoint))

    def load_on(self, endpoint: str, model_id: str, last_used: int, caller: str, timeout_s: float) -> None:
        self.mesh(endpoint).ensureLoaded(
            mesh_pb.EnsureLoadedRequest(modelId=model_id, lastUsedTime=last_used, sync=True),
            metadata=[(LOCAL_HEADER, caller)], timeout=timeout_s)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
