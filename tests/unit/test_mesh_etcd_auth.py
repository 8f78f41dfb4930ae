"""The embedded mesh on an etcd with auth enabled, as RHOAI's etcd pod leaves it (its postStart hook): the registry
authenticates as the user the mesh's etcd_connection names, and renews an expired token; without the user it is
refused. A real etcd, started and stopped by PID."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from etcd3gw.exceptions import Etcd3Exception
from mmgitops import procs
from mmgitops.lab.mesh import etcdauth, etcdserver
from mmgitops.lab.mesh.registry import ModelRecord, Registry, kv_prefix

pytestmark = pytest.mark.unit
PASSWORD = "not-a-secret-test-password"


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[str]:
    server = etcdserver.start(tmp_path / "data", tmp_path / "etcd.log")
    try:
        for path, body in (("auth/user/add", {"name": "root", "password": PASSWORD}),
                           ("auth/role/add", {"name": "root"}),
                           ("auth/user/grant", {"user": "root", "role": "root"}), ("auth/enable", {})):
            requests.post(f"{server.endpoint}/v3/{path}", data=json.dumps(body), timeout=5).raise_for_status()
        yield server.endpoint
    finally:
        procs.stop(server.pid)


def connection(tmp_path: Path, endpoint: str, password: str = PASSWORD) -> Path:
    path = tmp_path / "etcd_connection"
    path.write_text(json.dumps({"endpoints": endpoint, "root_prefix": "modelmesh-serving", "userid": "root",
                                "password": password}), encoding="utf-8")
    return path


def test_the_registry_authenticates_as_the_connections_user(etcd: str, tmp_path: Path) -> None:
    registry = Registry(etcd, kv_prefix("modelmesh-serving"), str(connection(tmp_path, etcd)))
    assert registry.create_model("m__isvc-0123456789", ModelRecord("mt:sklearn", "m/1", "{}", 1, True))
    assert registry.read_model("m__isvc-0123456789") is not None


def test_without_the_user_etcd_refuses_the_registry(etcd: str) -> None:
    registry = Registry(etcd, kv_prefix("modelmesh-serving"))
    with pytest.raises(Etcd3Exception, match="Bad Request"):  # etcd's "user name is empty", as etcd3gw words it
        registry.read_model("m__isvc-0123456789")


def test_an_expired_token_is_renewed_once(etcd: str, tmp_path: Path) -> None:
    session = etcdauth.AuthSession(etcd, "root", PASSWORD)
    session.authenticate()
    session._token = "expired.token"  # what etcd answers 401 to once its simple token's TTL has passed
    answer = session.post(f"{etcd}/v3/kv/range", data=json.dumps({"key": "Zm9v"}), timeout=5)
    assert answer.status_code == 200


def test_credentials_come_from_the_connection_file(tmp_path: Path) -> None:
    assert etcdauth.credentials(str(connection(tmp_path, "http://etcd:2379"))) == ("root", PASSWORD)
    (tmp_path / "plain").write_text(json.dumps({"endpoints": "http://etcd:2379"}), encoding="utf-8")
    assert etcdauth.credentials(str(tmp_path / "plain")) is None
    assert etcdauth.credentials("") is None
