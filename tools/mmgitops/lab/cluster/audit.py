"""The local cluster's API audit log: a policy that records only the tests' least-privileged identities, and a
reader of the events one user caused (to compare the verbs an identity uses with the verbs its roles grant)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmgitops.errors import ToolError


def policy(namespaces: tuple[str, ...]) -> dict[str, Any]:
    """Metadata (who, verb, resource, answer; no bodies) for the ServiceAccounts of `namespaces`, nothing for anyone
    else: the controllers and stand-ins call the API server all the time and would bury them."""
    return {
        "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata", "userGroups": [f"system:serviceaccounts:{n}" for n in namespaces]},
                  {"level": "None"}],
    }


def log_path() -> Path:
    """Where kwokctl's binary runtime has kube-apiserver write it (GetLogPath(AuditLogName))."""
    from mmgitops.lab.cluster import cluster

    return Path.home() / ".kwok" / "clusters" / cluster.name() / "logs" / "audit.log"


def audit_events(user: str, log: Path | None = None) -> list[dict[str, Any]]:
    """Every audit event whose authenticated user is `user` (for a ServiceAccount
    system:serviceaccount:NAMESPACE:NAME), oldest first. `log` defaults to the running local cluster's."""
    if log is None:
        from mmgitops.lab.cluster import cluster

        state = cluster.read_state()
        if not state or not state.get("audit_log"):
            raise ToolError("no local cluster with an audit log is up: `mmgitops local cluster up` first")
        log = Path(state["audit_log"])
    if not log.is_file():
        return []  # nothing audited yet: kube-apiserver creates the file with its first event
    events = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if (event.get("user") or {}).get("username") == user:
            events.append(event)
    return events
