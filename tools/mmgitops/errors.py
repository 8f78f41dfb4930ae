"""Findings (exit 1) and environment/usage errors (exit 2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, order=True)
class Finding:
    """One problem, printed as one line: FILE: KIND/NAME: FIELD: message [rule]. A warning (what may be right on
    a cluster the repository cannot see, or works but not as the author thinks) is printed as such and does not
    change the exit status."""

    file: str
    obj: str
    field: str
    message: str
    rule: str
    severity: str = "error"  # or "warning"

    def line(self) -> str:
        warning = "warning: " if self.severity == "warning" else ""
        return f"{self.file}: {self.obj}: {self.field or '(object)'}: {warning}{self.message} [{self.rule}]"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class ToolError(Exception):
    """The tool cannot run here (missing kustomize, go, CRDs, bad arguments): exit 2."""


class Forbidden(ToolError):
    """The API server refused the runner a call it needs (403): the run stops, exit 2, with the server's message,
    which names the verb, the resource and the namespace."""
