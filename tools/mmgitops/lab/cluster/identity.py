"""Acting as a ServiceAccount of the local cluster: a TokenRequest token, and a kubeconfig that holds nothing else.

Used for processes that must have the account's rights and no more than that: Argo CD's controller, and the
conformance runner of `make demo` and the tests.
"""

from __future__ import annotations

from pathlib import Path

import urllib3
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from mmgitops.errors import ToolError


def token(api: client.ApiClient, namespace: str, account: str, seconds: int, audience: str = "") -> str:
    """A bound token of the account (for `audience`, else the API server's own); the API server may shorten its
    life."""
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": seconds, **({"audiences": [audience]} if audience else {})}}
    try:
        answer = client.CoreV1Api(api).create_namespaced_service_account_token(account, namespace, request,
                                                                                _request_timeout=30)
    except ApiException as exc:
        raise ToolError(f"TokenRequest for ServiceAccount {namespace}/{account}: {exc.reason}") from None
    except urllib3.exceptions.HTTPError as exc:
        raise ToolError(f"the local cluster's API server at {api.configuration.host} does not answer "
                        f"({type(getattr(exc, 'reason', exc)).__name__}): is it up? `mmgitops local cluster status` "
                        "tells") from None
    return str(answer.status.token)


def kubeconfig(admin: Path, token_value: str, path: Path, name: str, server: str | None = None,
               namespace: str | None = None) -> Path:
    """A kubeconfig at `path` (mode 600) with the cluster entry of the admin's, `server` replacing its address when
    given, and the token as its only credentials."""
    entry = dict(yaml.safe_load(admin.read_text(encoding="utf-8"))["clusters"][0]["cluster"])
    if server:
        entry["server"] = server
    context = {"cluster": "local", "user": name, **({"namespace": namespace} if namespace else {})}
    config = {"apiVersion": "v1", "kind": "Config", "current-context": name,
              "clusters": [{"name": "local", "cluster": entry}],
              "users": [{"name": name, "user": {"token": token_value}}],
              "contexts": [{"name": name, "context": context}]}
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def service_account_kubeconfig(admin: Path, namespace: str, account: str, path: Path,
                               seconds: int = 7200) -> Path:
    api = client.ApiClient(_configuration(admin))
    try:
        return kubeconfig(admin, token(api, namespace, account, seconds), path, account, namespace=namespace)
    finally:
        api.close()


def _configuration(admin: Path) -> client.Configuration:
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(admin), client_configuration=configuration)
    return configuration
