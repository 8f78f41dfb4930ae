"""Python stubs for the `mmesh` protos, generated with grpcio-tools at first use and cached.

Generating at run time keeps the stubs in step with the installed protobuf runtime; nothing
generated is committed.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from functools import cache
from importlib import resources
from pathlib import Path
from types import ModuleType

import grpc_tools
import platformdirs
from grpc_tools import protoc

from mmgitops.errors import ToolError

PROTOS = ("model-runtime.proto", "model-mesh.proto")


def _out_dir() -> Path:
    proto_dir = Path(str(resources.files("mmgitops.modelmesh").joinpath("proto")))
    digest = hashlib.sha256(grpc_tools.__file__.encode())
    for name in PROTOS:
        digest.update((proto_dir / name).read_bytes())
    return Path(platformdirs.user_cache_dir("mmgitops")) / "stubs" / digest.hexdigest()[:16]


@cache
def load(name: str) -> tuple[ModuleType, ModuleType]:
    """(messages, services) for a proto of this package, e.g. load("model-runtime")."""
    proto_dir = Path(str(resources.files("mmgitops.modelmesh").joinpath("proto")))
    out = _out_dir()
    module = name.replace("-", "_")
    if not (out / f"{module}_pb2_grpc.py").is_file():
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ToolError(f"cache directory {out}: cannot be made ({error.strerror or error}): the gRPC stubs are "
                            "generated there") from None
        include = Path(grpc_tools.__file__).parent / "_proto"
        code = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}",
                            f"--grpc_python_out={out}", str(proto_dir / f"{name}.proto")])
        if code != 0:
            raise ToolError(f"protoc failed on {name}.proto (exit {code})")
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return importlib.import_module(f"{module}_pb2"), importlib.import_module(f"{module}_pb2_grpc")


@cache
def v2() -> tuple[ModuleType, ModuleType]:
    """(messages, services) of the KServe v2 `inference` protocol, from a published package.

    MLServer's stubs when MLServer is installed (the lab serves its REST proxy with MLServer's converters, which
    take MLServer's messages), else tritonclient's (a certifying run need not install MLServer). A process may
    hold only one of the two: both define the `inference` package, and protobuf refuses a symbol defined twice.
    """
    try:
        from mlserver.grpc import dataplane_pb2, dataplane_pb2_grpc
    except ImportError:
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        return service_pb2, service_pb2_grpc
    return dataplane_pb2, dataplane_pb2_grpc


def mesh() -> tuple[ModuleType, ModuleType]:
    """(messages, services) of `mmesh.ModelMesh`, the management and inference API of a ModelMesh pod."""
    return load("model-mesh")


def runtime() -> tuple[ModuleType, ModuleType]:
    """(messages, services) of `mmesh.ModelRuntime`, the SPI between ModelMesh and a runtime's adapter."""
    return load("model-runtime")
