"""Policy rules: what this repository promises beyond schemas. Each rule has a name and a reason."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mmgitops.errors import Finding
from mmgitops.gitops.checks.rules import Context, finding, rule
from mmgitops.gitops.checks.schema import field_path
from mmgitops.gitops.objects import SYNC_OPTIONS_ANNOTATION, WAVE_ANNOTATION, K8sObject, dig
from mmgitops.gitops.render import Rendered, Target, display, kustomization_file


@cache
def dependencies() -> dict[str, Any]:
    text = resources.files("mmgitops").joinpath("data/dependencies.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


# --- objects -----------------------------------------------------------------------------

CHANNEL_2X = re.compile(r"^(stable|eus|fast)-2\.\d+$")


@rule("rhoai-channel-2x", "ModelMesh exists only in RHOAI 2.x; 3.x drops modelmeshserving")
def rhoai_channel(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    if obj.kind == "Subscription" and dig(obj.body, "spec", "name") == "rhods-operator":
        channel = str(dig(obj.body, "spec", "channel") or "")
        if not CHANNEL_2X.match(channel):
            yield finding(obj, "spec.channel", f"channel {channel!r} is not a 2.x channel "
                          "(stable-2.25 or eus-2.25)", "rhoai-channel-2x")


@rule("dsc-v1", "DataScienceCluster v2 (RHOAI 3.x) has no modelmeshserving")
def dsc_v1(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    if obj.kind == "DataScienceCluster" and obj.api_version != "datasciencecluster.opendatahub.io/v1":
        yield finding(obj, "apiVersion", f"{obj.api_version!r} must be datasciencecluster.opendatahub.io/v1",
                      "dsc-v1")


@rule("dsci-default-name", "the RHOAI operator only reconciles the DSCInitialization named default-dsci")
def dsci_name(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    if obj.kind == "DSCInitialization" and obj.name != "default-dsci":
        yield finding(obj, "metadata.name", f"{obj.name!r} must be 'default-dsci'", "dsci-default-name")


@rule("cluster-scoped-no-namespace", "a namespace on a cluster-scoped object is an error or silently dropped")
def cluster_scoped(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    scoped = ctx.catalog.cluster_scoped(obj.group, obj.kind)
    if scoped and obj.namespace:
        yield finding(obj, "metadata.namespace", f"{obj.kind} is cluster-scoped: remove the namespace",
                      "cluster-scoped-no-namespace")
    elif scoped is False and not obj.namespace:
        yield finding(obj, "metadata.namespace", f"{obj.kind} is namespaced: set a namespace "
                      "(Argo CD applications here set no default)", "cluster-scoped-no-namespace")


@rule("no-plaintext-secret", "Secret values never go into git: generate them from git-ignored files")
def plaintext_secret(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    generated = Path(obj.file).name.startswith(("kustomization", "Kustomization"))
    if obj.kind == "Secret" and obj.group == "" and not generated:
        for key in ("data", "stringData"):
            if obj.body.get(key):
                yield finding(obj, key, "Secret values are committed in plain text", "no-plaintext-secret")


def _images(body: Any, path: list[Any]) -> Iterator[tuple[list[Any], str]]:
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "image" and isinstance(value, str):
                yield [*path, key], value
            else:
                yield from _images(value, [*path, key])
    elif isinstance(body, list):
        for index, value in enumerate(body):
            yield from _images(value, [*path, index])


@rule("no-latest-image", "a moving tag makes two syncs of the same commit run different code")
def latest_image(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    for path, image in _images(obj.body, []):
        last = image.rsplit("/", 1)[-1]
        in_container = any(p in ("containers", "initContainers") for p in path)
        if last.endswith(":latest") or (in_container and ":" not in last and "@" not in last):
            yield finding(obj, field_path(path), f"image {image!r} has no pinned tag", "no-latest-image")


@rule("isvc-modelmesh-annotation", "without it KServe, not ModelMesh, deploys the model")
def isvc_annotation(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    if obj.kind == "InferenceService" and obj.annotations.get("serving.kserve.io/deploymentMode") != "ModelMesh":
        yield finding(obj, "metadata.annotations.serving.kserve.io/deploymentMode",
                      "must be 'ModelMesh'", "isvc-modelmesh-annotation")


@rule("isvc-modelmesh-namespace", "RHOAI serves ModelMesh models only in namespaces labelled modelmesh-enabled")
def isvc_namespace(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    if obj.kind != "InferenceService":
        return
    labels = ctx.namespaces.get(obj.namespace)
    if labels is None:
        yield finding(obj, "metadata.namespace", f"namespace {obj.namespace!r} is not defined in "
                      f"{ctx.mesh.source} with label modelmesh-enabled: \"true\"", "isvc-modelmesh-namespace")
    elif labels.get("modelmesh-enabled") != "true":
        yield finding(obj, "metadata.namespace", f"namespace {obj.namespace!r} lacks label "
                      "modelmesh-enabled: \"true\"", "isvc-modelmesh-namespace")


@rule("sync-wave-integer", "Argo CD reads sync waves as integers; anything else is an error at sync time")
def sync_wave(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    wave = obj.annotations.get(WAVE_ANNOTATION)
    if wave is not None and not re.fullmatch(r"-?\d+", str(wave)):
        yield finding(obj, f"metadata.annotations.{WAVE_ANNOTATION}", f"{wave!r} is not an integer",
                      "sync-wave-integer")


@rule("skip-dry-run-operator-crds", "an operator installs these CRDs after the first dry run of a sync")
def skip_dry_run(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    spec = dependencies()["kinds"].get(obj.kind) or {}
    if spec.get("crd_from_operator") and "SkipDryRunOnMissingResource=true" not in obj.annotations.get(
            SYNC_OPTIONS_ANNOTATION, ""):
        yield finding(obj, f"metadata.annotations.{SYNC_OPTIONS_ANNOTATION}",
                      "needs SkipDryRunOnMissingResource=true", "skip-dry-run-operator-crds")


# --- whole renders -----------------------------------------------------------------------

@rule("modelmesh-managed", "every rhoai-instance overlay and profile serves ModelMesh", "render")
def modelmesh_managed(rendered: Rendered, ctx: Context) -> Iterator[Finding]:
    if "overlays" not in rendered.target.path.parts:
        return
    for obj in rendered.objects:
        if obj.kind == "DataScienceCluster":
            state = dig(obj.body, "spec", "components", "modelmeshserving", "managementState")
            if state != "Managed":
                yield finding(obj, "spec.components.modelmeshserving.managementState",
                              f"{state!r} must be 'Managed' in {display(rendered.target.path)}",
                              "modelmesh-managed")


@rule("unique-object", "two objects with one identity: the later silently replaces the earlier", "render")
def unique_object(rendered: Rendered, ctx: Context) -> Iterator[Finding]:
    seen: set[tuple[str, str, str, str]] = set()
    for obj in rendered.objects:
        if obj.identity() in seen:
            yield finding(obj, "metadata.name", "the same object is defined twice", "unique-object")
        seen.add(obj.identity())


@rule("dsc-singleton", "the RHOAI operator accepts one DataScienceCluster per cluster", "render")
def dsc_singleton(rendered: Rendered, ctx: Context) -> Iterator[Finding]:
    dscs = [o for o in rendered.objects if o.kind == "DataScienceCluster"]
    for extra in dscs[1:]:
        yield finding(extra, "metadata.name", f"a second DataScienceCluster (first: {dscs[0].name})",
                      "dsc-singleton")


# --- kustomization files -----------------------------------------------------------------

def _kustomizations(targets: list[Target]) -> Iterator[tuple[Target, Path, dict[str, Any]]]:
    for target in targets:
        path = kustomization_file(target.path) if target.kind != "File" else None
        if path is None:
            continue
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            continue  # kustomize reports it
        if isinstance(doc, dict):
            yield target, path, doc


@rule("component-used", "a Component no overlay uses is never rendered, so never validated", "tree")
def component_used(targets: list[Target], ctx: Context) -> Iterator[Finding]:
    used = set()
    for target, _path, doc in _kustomizations(targets):
        for entry in doc.get("components") or []:
            used.add((target.path / str(entry)).resolve())
    for target, path, _doc in _kustomizations(targets):
        if target.kind == "Component" and target.path not in used:
            yield Finding(display(path), f"Component/{target.path.name}", "(object)",
                          "no kustomization among those validated uses this Component", "component-used")


@rule("modelmesh-before-kserve", "enabling KServe before ModelMesh has broken ModelMesh "
      "(opendatahub-operator #508)", "tree")
def modelmesh_first(targets: list[Target], ctx: Context) -> Iterator[Finding]:
    for target, path, doc in _kustomizations(targets):
        entries = [str(e) for e in doc.get("components") or []]
        kserve = [i for i, e in enumerate(entries) if "kserve" in Path(e).name]
        modelmesh = [i for i, e in enumerate(entries) if "modelmesh" in Path(e).name]
        if kserve and modelmesh and min(kserve) < min(modelmesh):
            yield Finding(display(path), f"Kustomization/{target.path.name}", f"components[{min(kserve)}]",
                          "a KServe component is listed before the ModelMesh one", "modelmesh-before-kserve")


@rule("secret-env-ignored", "files that secretGenerator reads hold secret values: git must ignore them", "tree")
def secret_env_ignored(targets: list[Target], ctx: Context) -> Iterator[Finding]:
    for target, path, doc in _kustomizations(targets):
        for i, gen in enumerate(doc.get("secretGenerator") or []):
            for key in ("envs", "files"):
                for j, entry in enumerate(gen.get(key) or []):
                    source = str(entry).split("=", 1)[-1]
                    if not _git_ignored(target.path / source):
                        yield Finding(display(path), f"Kustomization/{target.path.name}",
                                      f"secretGenerator[{i}].{key}[{j}]",
                                      f"{source} is not git-ignored", "secret-env-ignored")


def _git_ignored(path: Path) -> bool:
    probe = subprocess.run(["git", "-C", str(path.parent), "rev-parse", "--is-inside-work-tree"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return True  # not a git checkout: nothing can be committed by mistake
    result = subprocess.run(["git", "-C", str(path.parent), "check-ignore", "-q", path.name],
                            capture_output=True)
    return result.returncode == 0
