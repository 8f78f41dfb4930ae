"""Argo CD's sync order: phase, then sync wave, then kind, then name."""

from __future__ import annotations

import re

from mmgitops.gitops.objects import HOOK_ANNOTATION, WAVE_ANNOTATION, K8sObject

PHASES = {"PreSync": -1, "Sync": 0, "PostSync": 1, "SyncFail": 2}

# Argo CD's install order of built-in kinds (the Helm order); every other kind comes after.
KIND_ORDER = (
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList",
    "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController",
    "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
    "IngressClass", "Ingress", "APIService",
)
_KIND_RANK = {kind: i - len(KIND_ORDER) for i, kind in enumerate(KIND_ORDER)}


def phase(obj: K8sObject) -> str:
    hooks = obj.annotations.get(HOOK_ANNOTATION, "")
    first = hooks.split(",")[0].strip()
    return first if first in PHASES else "Sync"


INTEGER = re.compile(r"-?\d+")


def _wave_text(obj: K8sObject) -> str:
    return str(obj.annotations.get(WAVE_ANNOTATION, "0")).strip()


def wave_is_integer(obj: K8sObject) -> bool:
    return INTEGER.fullmatch(_wave_text(obj)) is not None


def wave(obj: K8sObject) -> int:
    """The object's wave; 0 for a value that is not an integer, which the plan reports."""
    return int(_wave_text(obj)) if wave_is_integer(obj) else 0


def sort_key(obj: K8sObject) -> tuple[int, int, int, str]:
    return (PHASES[phase(obj)], wave(obj), _KIND_RANK.get(obj.kind, 0), obj.name)


def gate(obj: K8sObject) -> tuple[int, int]:
    """What Argo CD waits on between steps: the phase and the wave, not kind or name."""
    return (PHASES[phase(obj)], wave(obj))
