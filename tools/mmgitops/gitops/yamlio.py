"""YAML loading that turns parser errors into findings instead of tracebacks.

Stricter than PyYAML's safe loader where a manifest cannot mean what it says: a key given twice in one mapping
(kustomize refuses it too; PyYAML keeps the last), an alias that refers to itself, and aliases that expand past
MAX_NODES (an alias bomb, which costs memory only once something walks the document).
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from mmgitops.errors import Finding

try:  # the C loader is several times faster on the large CRD files
    Base: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    Base = yaml.SafeLoader

# Nodes a document may expand to through its aliases: the largest CRD here has about 40,000.
MAX_NODES = 2_000_000


class Loader(Base):  # type: ignore[misc, valid-type]
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise ConstructorError("while constructing a mapping", node.start_mark,
                                       f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


class AliasError(yaml.YAMLError):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _expanded_size(doc: Any) -> int:
    """How many nodes the document is once every alias is expanded; AliasError for a cycle or past MAX_NODES."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(value: Any) -> int:
        if not isinstance(value, dict | list):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in on_path:
            raise AliasError("an alias refers to the node that contains it (a recursive alias)")
        on_path.add(key)
        children = value.values() if isinstance(value, dict) else value
        total = 1 + sum(size(child) for child in children)
        on_path.discard(key)
        if total > MAX_NODES:
            raise AliasError(f"aliases expand the document past {MAX_NODES:,} nodes (an alias bomb?)")
        sizes[key] = total
        return total

    return size(doc)


def load_all(text: str) -> list[Any]:
    docs = [doc for doc in yaml.load_all(text, Loader=Loader) if doc is not None]
    for doc in docs:
        _expanded_size(doc)
    return docs


def load_file(path: Path, shown_as: str) -> tuple[list[Any], list[Finding]]:
    """All documents of a YAML file, or one finding that says where it stops parsing."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a named pipe or a device would block or never end
            return [], [Finding(shown_as, "(document)", "", "not a regular file", "yaml")]
        return load_all(path.read_text(encoding="utf-8")), []
    except RecursionError:
        return [], [Finding(shown_as, "(document)", "document", "invalid YAML: nested too deeply", "yaml")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "document"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return [], [Finding(shown_as, "(document)", where, f"invalid YAML: {problem}", "yaml")]
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Finding(shown_as, "(document)", "", f"cannot read: {exc}", "yaml")]
