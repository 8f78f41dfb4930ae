"""Model type constraints: which instances may hold a model of a given type, as ModelMesh decides it.

modelmesh-serving registers an InferenceService with ModelInfo.type "mt:<format>", "mt:<format>:<version>"
or "rt:<runtime>" (GetPredictorTypeLabel), gives each runtime's pods MM_LABELS (the runtime's
auto-selectable formats as mt:<name> and mt:<name>:<version>, its protocol versions as pv:<v>, and
rt:<runtime>) and writes a type-constraints file in which each of those labels requires itself and
every other type falls to `_default`, which requires the label `_no_runtime` that no pod has
(modelmesh-serving controllers/modelmesh/cluster_config.go calculateConstraintData). ModelMesh
(TypeConstraintManager, ModelMesh.verifyLocalTypeConstraintsBeforeLoad) fails a load at once when no
running instance has every required label, and places copies only on instances that have them.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping

DEFAULT_TYPE = "_default"
NO_RUNTIME_LABEL = "_no_runtime"
# ModelMesh's message when no running instance has the labels a type requires, before "<type>: [<labels>]".
NO_INSTANCE_MESSAGE = "There are no running instances that meet the label requirements of type "

# The built-in mlserver-1.x ServingRuntime: supportedModelFormats (all autoSelect) and protocolVersions;
# the REST proxy (on by default) adds pv:v2 for a grpc-v2 runtime.
MLSERVER_RUNTIME = "mlserver-1.x"
MLSERVER_FORMATS: tuple[tuple[str, str], ...] = (("sklearn", "0"), ("xgboost", "1"), ("lightgbm", "3"))
MLSERVER_PROTOCOLS: tuple[str, ...] = ("grpc-v2",)


def runtime_labels(runtime: str = MLSERVER_RUNTIME, formats: Iterable[tuple[str, str | None]] = MLSERVER_FORMATS,
                   protocols: Iterable[str] = MLSERVER_PROTOCOLS, rest_proxy: bool = True) -> tuple[str, ...]:
    """MM_LABELS of a runtime's pods (GetServingRuntimeLabelSet), sorted as the controller joins them."""
    labels = {f"rt:{runtime}"}
    for name, version in formats:
        labels.add(f"mt:{name}")
        if version is not None:
            labels.add(f"mt:{name}:{version}")
    for protocol in protocols:
        labels.add(f"pv:{protocol}")
        if rest_proxy and protocol == "grpc-v2":
            labels.add("pv:v2")
    return tuple(sorted(labels))


def constraints_for(labels: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The type-constraints map the controller writes for one runtime: type -> required labels."""
    labels = set(labels)
    runtimes = {label for label in labels if label.startswith("rt:")}
    types = {label for label in labels if label.startswith("mt:")}
    protocols = {label for label in labels if label.startswith("pv:")}
    table: dict[str, tuple[str, ...]] = {label: (label,) for label in runtimes | types}
    for model_type in types:
        for protocol in protocols:
            table[f"{model_type}|{protocol}"] = (model_type, protocol)
    table[DEFAULT_TYPE] = (NO_RUNTIME_LABEL,)
    return table


def required_labels(model_type: str, table: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """TypeConstraintManager: the type's own entry, else `_default`'s."""
    return table.get(model_type) or table.get(DEFAULT_TYPE, ())


def candidates(model_type: str, table: Mapping[str, tuple[str, ...]],
               instance_labels: Mapping[str, Iterable[str]]) -> set[str]:
    """The instances (id -> labels) that carry every label the type requires."""
    required = set(required_labels(model_type, table))
    return {iid for iid, labels in instance_labels.items() if required <= set(labels)}


def no_instance_message(model_type: str, table: Mapping[str, tuple[str, ...]]) -> str:
    """ModelMesh.verifyLocalTypeConstraintsBeforeLoad's message (labels as Java's Arrays.toString)."""
    return f"{NO_INSTANCE_MESSAGE}{model_type}: [{', '.join(required_labels(model_type, table))}]"


class ConstraintsFile:
    """The tc-config `type_constraints` file a pod mounts (MM_TYPE_CONSTRAINTS_PATH), read again whenever the
    kubelet has swapped it (ModelMesh's ConfigMapKeyFileWatcher feeding TypeConstraintManager). A file that cannot
    be read or parsed leaves the last table read in force; None until one has been read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._table: dict[str, tuple[str, ...]] | None = None
        self._lock = threading.Lock()

    def read(self) -> dict[str, tuple[str, ...]] | None:
        with self._lock:
            try:
                stat = os.stat(self.path)  # through the `..data` link: a swap is a new inode
                seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
                if seen != self._seen:
                    with open(self.path, encoding="utf-8") as handle:
                        parsed = json.load(handle)
                    self._table = {str(t): tuple(str(label) for label in entry.get("required") or ())
                                   for t, entry in parsed.items() if isinstance(entry, dict)}
                    self._seen = seen
            except (OSError, ValueError, AttributeError):
                pass
            return self._table
