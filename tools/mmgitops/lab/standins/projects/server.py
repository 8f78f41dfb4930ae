"""The HTTPS server kube-apiserver's aggregator proxies project.openshift.io requests to, on 127.0.0.1."""

from __future__ import annotations

import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client
from kubernetes.client.rest import ApiException

from mmgitops.lab.standins.projects.api import (
    GROUP,
    SUCCESS,
    VERSION,
    Refusal,
    discovery_group,
    discovery_resources,
    openapi,
    status,
)
from mmgitops.lab.standins.projects.registry import Admin, create_project, delete_project, list_projects
from mmgitops.lab.standins.projects.template import project_from


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the aggregator keeps its connections open
    admin: Admin
    body = b""

    def setup(self) -> None:
        super().setup()
        self.connection.do_handshake()  # here, in the request's thread, not in the accept loop

    def log_message(self, format: str, *args: Any) -> None:
        return  # kube-apiserver's audit log records the calls that matter

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers, up to the blank line
            pass
        return b"".join(chunks)

    def _identity(self) -> tuple[str, list[str]]:
        # The aggregator sends the user kube-apiserver authenticated (and authorized) in these headers. They are
        # trusted without more: the server listens on loopback only and asks for a client certificate of the
        # cluster's CA, which only kube-apiserver's proxy certificate (and the cluster admin) has.
        user = self.headers.get("X-Remote-User") or ""
        if not user:
            raise Refusal(403, "Forbidden", "no user in the request: it must come through kube-apiserver")
        return user, list(self.headers.get_all("X-Remote-Group") or [])

    def _route(self, method: str) -> tuple[int, dict[str, Any]]:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        parts = [p for p in url.path.split("/") if p]
        if method == "GET" and parts == ["apis"]:
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [discovery_group()]}
        if method == "GET" and parts == ["apis", GROUP]:
            return 200, discovery_group()
        if method == "GET" and parts == ["apis", GROUP, VERSION]:
            return 200, discovery_resources()
        if method == "GET" and parts[:1] == ["openapi"]:
            return 200, openapi(parts[1:])
        if parts[:3] != ["apis", GROUP, VERSION] or len(parts) not in (4, 5):
            raise Refusal(404, "NotFound", "the server could not find the requested resource")
        resource, name = parts[3], (parts[4] if len(parts) == 5 else "")
        if "dryRun" in query:
            raise Refusal(400, "BadRequest", "dryRun is not supported by the local stand-in")
        user, groups = self._identity()
        if query.get("watch", ["false"])[0] not in ("", "false", "0"):
            if resource != "projects" or method != "GET" or name:
                raise Refusal(405, "MethodNotAllowed", f"watch is not supported on {resource}")
            self._watch(user, groups, query)
            return 0, {}
        if resource == "projectrequests" and not name and method == "POST":
            try:
                body = json.loads(self.body or b"{}")
            except ValueError as exc:
                raise Refusal(400, "BadRequest", f"the request body is not JSON: {exc}") from exc
            return 201, create_project(self.admin, body if isinstance(body, dict) else {}, user, groups)
        if resource == "projectrequests" and not name and method == "GET":
            # As REST.List: Success when the user may request projects, else Forbidden.
            if self.admin.allowed(user, groups, {"verb": "create", "group": GROUP, "resource": "projectrequests"}):
                return 200, SUCCESS
            raise Refusal(403, "Forbidden", "You may not request a new project via this API.",
                          {"group": GROUP, "kind": "projectrequest"})
        if resource == "projects" and method == "GET":
            if name:
                return 200, project_from(self.admin.call("GET", f"/api/v1/namespaces/{name}"))
            return 200, list_projects(self.admin, user, groups, (query.get("labelSelector") or [None])[0])
        if resource == "projects" and name and method == "DELETE":
            return 200, delete_project(self.admin, name)
        raise Refusal(405, "MethodNotAllowed", f"{method} is not supported on {resource} by the local stand-in")

    def _watch(self, user: str, groups: list[str], query: dict[str, list[str]]) -> None:
        """A watch of projects: the namespaces' watch, each object as its Project, leaving out the projects the
        user may not see (as OpenShift's project watcher does; a deletion of one they saw is passed on)."""
        passed = ("resourceVersion", "resourceVersionMatch", "fieldSelector", "labelSelector", "timeoutSeconds",
                  "allowWatchBookmarks", "sendInitialEvents")
        params = [("watch", "true")] + [(k, query[k][0]) for k in passed if k in query]
        upstream = self.admin.api.call_api("/api/v1/namespaces", "GET", query_params=params,
                                           header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
                                           _preload_content=False, _return_http_data_only=True)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        seen: set[str] = set()
        try:
            for line in upstream:
                event = json.loads(line)
                obj = event.get("object") or {}
                if obj.get("kind") == "Namespace":
                    project = obj["metadata"]["name"]
                    if event.get("type") == "DELETED" and project not in seen:
                        continue
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        if not self.admin.allowed(user, groups, {"verb": "get", "resource": "namespaces",
                                                                 "namespace": project, "name": project}):
                            continue
                        seen.add(project)
                    event["object"] = project_from(obj)
                data = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        finally:
            upstream.release_conn()

    def _serve(self, method: str) -> None:
        # Read every body, DeleteOptions too: the connection is kept open for the aggregator's next request.
        self.body = self._read_body()
        try:
            code, body = self._route(method)
        except Refusal as refusal:
            code, body = refusal.body["code"], refusal.body
        except ApiException as exc:  # kube-apiserver's own answer (not found, conflict) is the answer
            try:
                body = json.loads(exc.body)
                code = int(body.get("code") or exc.status)
            except (TypeError, ValueError):
                code, body = exc.status or 500, status(exc.status or 500, "InternalError", str(exc.reason))
        except Exception as exc:
            print(f"projects: {self.command} {self.path}: {exc!r}", file=sys.stderr, flush=True)
            code, body = 500, status(500, "InternalError", f"Internal error occurred: {exc}")
        if code:  # 0: a watch, answered as it went
            self._send(code, body)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ssl.SSLEOFError, ConnectionError)):
            return  # a port probe (`up` waits for the port) or a client gone mid-request
        print(f"projects: connection from {client_address}: {sys.exc_info()[1]!r}", file=sys.stderr, flush=True)


def serve(api: client.ApiClient, port: int, pki: Path) -> ThreadingHTTPServer:
    """Start the HTTPS server on 127.0.0.1:port in a daemon thread, with kwokctl's admin certificate as its
    serving certificate; clients must present a certificate of the cluster's CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    context.load_verify_locations(pki / "ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED
    handler = type("Handler", (_Handler,), {"admin": Admin(api)})
    server = _Server(("127.0.0.1", port), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=server.serve_forever, name="projects", daemon=True).start()
    return server
