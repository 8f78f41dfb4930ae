"""YAML loading that turns parser errors into findings instead of tracebacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mmgitops.errors import Finding

try:  # the C loader is several times faster on the large CRD files
    Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    Loader = yaml.SafeLoader


def load_all(text: str) -> list[Any]:
    return [doc for doc in yaml.load_all(text, Loader=Loader) if doc is not None]


def load_file(path: Path, shown_as: str) -> tuple[list[Any], list[Finding]]:
    """All documents of a YAML file, or one finding that says where it stops parsing."""
    try:
        return load_all(path.read_text(encoding="utf-8")), []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "document"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return [], [Finding(shown_as, "(document)", where, f"invalid YAML: {problem}", "yaml")]
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Finding(shown_as, "(document)", "", f"cannot read: {exc}", "yaml")]
