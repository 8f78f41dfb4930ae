"""ModelMesh's REST proxy: KServe v2 REST on 127.0.0.1, forwarded as KServe v2 gRPC to a mesh instance.

It does what kserve/rest-proxy (grpc-gateway v2.15, port 8008 in a ModelMesh pod) does, and no more:

* POST /v2/models/{name}/infer and /v2/models/{name}/versions/{version}/infer -> ModelInfer;
* GET /v2/models/{name} and /v2/models/{name}/versions/{version} -> ModelMetadata;
* a gRPC error becomes grpc-gateway's HTTP status for its code, with grpc-gateway's body
  {"code": <grpc code>, "message": <details>} plus "error" (the KServe v2 REST error field);
* a path that only another method serves answers 501 (grpc-gateway turns "Method Not Allowed" into
  Unimplemented), any other path 404, both with the same JSON body;
* Grpc-Metadata-<key> request headers go on as gRPC metadata <key>, and the server's header metadata
  comes back as Grpc-Metadata-<key> response headers (grpc-gateway's default header matchers);
  mm-vmodel-id and mm-model-id go on as they are too, which grpc-gateway would not do unprefixed.

JSON <-> protobuf conversion is MLServer's (mlserver.types and mlserver.grpc.converters). Fields the
upstream proxy leaves out when empty (id, parameters, versions, ...) are left out here too.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
import uvicorn
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc as pb_grpc
from mlserver.grpc.converters import (
    ModelInferRequestConverter,
    ModelInferResponseConverter,
    ModelMetadataResponseConverter,
)
from mlserver.types import InferenceRequest
from pydantic import ValidationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# grpc-gateway's runtime.HTTPStatusFromCode.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
PASSED_HEADERS = frozenset({"mm-vmodel-id", "mm-model-id"})
GRPC_METADATA_PREFIX = "grpc-metadata-"
# rest-proxy's default REST_PROXY_GRPC_MAX_MSG_SIZE.
MAX_RECEIVE_BYTES = 16 * 1024 * 1024
JSON_HEADERS = [(b"content-type", b"application/json")]


class _Failure(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _route(path: str) -> tuple[str, str, str] | None:
    """(HTTP method, model name, version) of the upstream route the path matches, if any."""
    parts = path[1:].split("/")  # like grpc-gateway: a trailing slash leaves an empty segment, which matches nothing
    if len(parts) < 3 or parts[0] != "v2" or parts[1] != "models" or not parts[2]:
        return None
    name, rest = parts[2], parts[3:]
    if not rest:
        return "GET", name, ""
    if rest == ["infer"]:
        return "POST", name, ""
    if len(rest) in (2, 3) and rest[0] == "versions" and rest[1]:
        if len(rest) == 2:
            return "GET", name, rest[1]
        if rest[2] == "infer":
            return "POST", name, rest[1]
    return None


def _metadata(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str | bytes]]:
    out: list[tuple[str, str | bytes]] = []
    for raw_key, raw_value in headers:
        key, value = raw_key.decode("latin-1").lower(), raw_value.decode("latin-1")
        if key.startswith(GRPC_METADATA_PREFIX):
            key = key[len(GRPC_METADATA_PREFIX):]
        elif key not in PASSED_HEADERS:
            continue
        if key.endswith("-bin"):  # binary metadata travels base64-encoded in HTTP, as grpc-gateway expects
            try:
                out.append((key, base64.b64decode(value)))
            except binascii.Error:
                continue
        elif key:
            out.append((key, value))
    return out


def _prune(mapping: dict[str, Any]) -> dict[str, Any]:
    # The upstream proxy omits unset fields (Go omitempty / protojson without EmitUnpopulated).
    return {k: v for k, v in mapping.items() if v not in ("", [], {}, None)}


class RestProxy:
    """The ASGI application; it opens its gRPC channel at lifespan startup, on the server's event loop."""

    def __init__(self, grpc_target: str, timeout: float | None = None) -> None:
        self.grpc_target, self.timeout = grpc_target, timeout
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.GRPCInferenceServiceStub | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._channel = grpc.aio.insecure_channel(self.grpc_target, options=[
                    ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES), ("grpc.max_send_message_length", -1)])
                self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._channel is not None:
                    await self._channel.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route(scope["path"])
        headers: list[tuple[bytes, bytes]] = []
        try:
            if route is None:
                raise _Failure(grpc.StatusCode.NOT_FOUND, "Not Found")
            method, name, version = route
            if scope["method"] != method:
                raise _Failure(grpc.StatusCode.UNIMPLEMENTED, "Method Not Allowed")
            metadata = _metadata(scope["headers"])
            if method == "POST":
                call = self._call_infer(await _read_body(receive), name, version, metadata)
                response = await call
                payload = _prune(ModelInferResponseConverter.to_types(response).model_dump(exclude_none=True))
                if "outputs" in payload:
                    payload["outputs"] = [_prune(o) for o in payload["outputs"]]
            else:
                assert self._stub is not None
                call = self._stub.ModelMetadata(pb.ModelMetadataRequest(name=name, version=version),
                                                metadata=metadata, timeout=self.timeout)
                response = await call
                payload = _prune(ModelMetadataResponseConverter.to_types(response).model_dump(exclude_none=True))
                for key in ("inputs", "outputs"):
                    if key in payload:
                        payload[key] = [_prune(t) for t in payload[key]]
            status, body = 200, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
            headers = _response_headers(await call.initial_metadata())
        except _Failure as failure:
            status, body = HTTP_STATUS.get(failure.code, 500), _error(failure.code, failure.message)
        except grpc.aio.AioRpcError as exc:
            status, body = HTTP_STATUS.get(exc.code(), 500), _error(exc.code(), exc.details() or "")
            headers = _response_headers(exc.initial_metadata())
        except Exception as exc:  # an answer that cannot be rendered is the proxy's failure, told as JSON
            status, body = 500, _error(grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")
        await send({"type": "http.response.start", "status": status,
                    "headers": [*JSON_HEADERS, *headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _call_infer(self, body: bytes, name: str, version: str,
                    metadata: list[tuple[str, str | bytes]]) -> grpc.aio.UnaryUnaryCall:
        try:
            if body.strip():
                request = _infer_request(body, name, version)
            else:  # grpc-gateway passes an empty body on as an empty request; the server judges it
                request = pb.ModelInferRequest(model_name=name, model_version=version)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise _Failure(grpc.StatusCode.INVALID_ARGUMENT,
                           f"invalid inference request: {where + ': ' if where else ''}{first['msg']}") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise _Failure(grpc.StatusCode.INVALID_ARGUMENT, f"invalid inference request: {exc}") from exc
        assert self._stub is not None
        return self._stub.ModelInfer(request, metadata=metadata, timeout=self.timeout)


def _infer_request(body: bytes, name: str, version: str) -> pb.ModelInferRequest:
    parsed = InferenceRequest.model_validate_json(body)
    for tensor in parsed.inputs:
        tensor.data.root = _flat(tensor.data.root)
    return ModelInferRequestConverter.from_types(parsed, model_name=name, model_version=version)


def _response_headers(metadata: Any) -> list[tuple[bytes, bytes]]:
    # grpc-gateway hands the server's header metadata back as Grpc-Metadata-<key> HTTP headers.
    return [(f"{GRPC_METADATA_PREFIX}{key}".encode("latin-1"), value.encode("latin-1"))
            for key, value in (metadata or ()) if isinstance(value, str)]


def _flat(data: Any) -> Any:
    # The upstream proxy takes nested arrays as well as flat ones; the gRPC tensor is always flat.
    if not isinstance(data, list) or not any(isinstance(item, list) for item in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _error(code: grpc.StatusCode, message: str) -> bytes:
    return orjson.dumps({"code": code.value[0], "message": message, "error": message})


def _config(grpc_target: str, port: int, timeout: float | None) -> uvicorn.Config:
    return uvicorn.Config(RestProxy(grpc_target, timeout), host="127.0.0.1", port=port, lifespan="on",
                          log_level="warning", access_log=False, server_header=False)


@dataclass
class RestServer:
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start(grpc_target: str, port: int, *, timeout: float | None = None, wait: float = 10.0) -> RestServer:
    """The proxy on 127.0.0.1:port (0: any free port, see .port), served from a daemon thread."""
    server = uvicorn.Server(_config(grpc_target, port, timeout))

    def run() -> None:
        # uvicorn exits the process's way (SystemExit) when it cannot bind; here that only ends the thread.
        with contextlib.suppress(SystemExit):
            server.run()

    thread = threading.Thread(target=run, name=f"rest-proxy-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + wait
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(wait)
            raise OSError(f"REST proxy did not start on 127.0.0.1:{port}")
        time.sleep(0.01)
    return RestServer(server, thread)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mmgitops.lab.mesh.rest", description=__doc__.splitlines()[0])
    parser.add_argument("--grpc", required=True, metavar="HOST:PORT", help="the mesh's KServe v2 gRPC endpoint")
    parser.add_argument("--port", type=int, default=8008, help="the REST port on 127.0.0.1 (default 8008)")
    args = parser.parse_args(argv)
    uvicorn.Server(_config(args.grpc, args.port, None)).run()


if __name__ == "__main__":
    main()
