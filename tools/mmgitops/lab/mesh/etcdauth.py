"""etcd's authentication, for the embedded mesh's etcd3gw client: when the mesh's etcd connection (the
`etcd_connection` of modelmesh-serving's `model-serving-etcd` Secret) names a `userid` and `password`, as RHOAI's
does once its etcd pod's postStart hook has enabled auth, every request carries a token from
`/v3/auth/authenticate`. A token that expired (etcd's simple tokens live `--auth-token-ttl`, 300 s, past their last
use) is renewed once and the request sent again, as ModelMesh's etcd client and Go's clientv3 do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

AUTH_NOT_ENABLED = "authentication is not enabled"


def credentials(connection_file: str) -> tuple[str, str] | None:
    """(userid, password) from an etcd_connection file, or None when it names no user."""
    if not connection_file:
        return None
    connection = json.loads(Path(connection_file).read_text(encoding="utf-8"))
    user, password = connection.get("userid"), connection.get("password")
    return (str(user), str(password or "")) if user else None


class AuthSession(requests.Session):
    def __init__(self, base_url: str, user: str, password: str) -> None:
        super().__init__()
        self.base_url, self._user, self._password = base_url.rstrip("/"), user, password
        self._token: str | None = None

    def authenticate(self) -> None:
        answer = requests.post(f"{self.base_url}/v3/auth/authenticate", timeout=5,
                               data=json.dumps({"name": self._user, "password": self._password}))
        if answer.status_code == 200:
            self._token = str(answer.json().get("token", ""))
        elif AUTH_NOT_ENABLED in answer.text:
            self._token = ""  # as clientv3 does: no token, and nothing to refuse
        else:
            answer.raise_for_status()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if self._token is None:
            self.authenticate()
        answer = self._send_with_token(method, url, *args, **kwargs)
        if answer.status_code == 401:  # the token expired (or etcd restarted): once more with a new one
            self.authenticate()
            answer = self._send_with_token(method, url, *args, **kwargs)
        return answer

    def _send_with_token(self, method: str | bytes, url: str | bytes, *args: Any,
                         **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if self._token:
            headers["Authorization"] = self._token
        return super().request(method, url, *args, headers=headers, **kwargs)
