"""The mesh's failures as the gRPC status a caller sees, whichever layer raised them."""

from __future__ import annotations

import grpc


class MeshError(Exception):
    """A request or management call that fails with a gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def as_mesh_error(error: MeshError | grpc.RpcError) -> MeshError:
    if isinstance(error, MeshError):
        return error
    return MeshError(error.code(), error.details() or "")
