"""The kubelet's part for the pods whose images run on this machine (images.py): when kwok reports such a pod
Running, its init containers run to completion, then each container's program starts in the pod network
(network.py) with the env and volumes the kubelet would give it (podenv.py, volumes.py) and a hosts file that
resolves the cluster's Services as cluster DNS would; when the pod goes, its processes go.

Each program runs in a mount namespace of its own, where the pod's hosts file is bind-mounted over /etc/hosts, so
that `http://etcd:2379` in modelmesh-serving's etcd Secret reaches the etcd Service as it does on RHOAI.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes.client.rest import ApiException

from mmgitops import procs
from mmgitops.errors import ToolError
from mmgitops.lab import egress, netns
from mmgitops.lab.kubelet import (
    KubeletError,
    Objects,
    engines,
    images,
    network,
    podenv,
    publish,
    refpod,
    runtimepod,
    volumes,
)
from mmgitops.lab.mesh import control
from mmgitops.lab.ports import free_port
from mmgitops.lab.spawn import spawn

PIDS_FILE = "pods.json"  # "ns/pod/container" -> PID, for `local cluster down` after a killed stand-in
# (namespace, ServiceAccount, audience, seconds) -> a bound token of that account
TokenFor = Callable[[str, str, str, int], str]
# (namespace, ServiceAccount token, path) -> a kubeconfig at path holding only that token
KubeconfigFor = Callable[[str, str, Path], Path]
BACKOFF_S, MAX_BACKOFF_S = 10.0, 300.0  # the kubelet's crash-loop back-off (initial, cap)
TOKEN_SECONDS = 24 * 3600  # the lab's pods live shorter; a pod's projected token is renewed hourly instead


@dataclass
class Backed:
    uid: str
    pids: dict[str, int] = field(default_factory=dict)
    tokens: dict[tuple[str, int], str] = field(default_factory=dict)  # one per audience, for the pod's life
    instance: dict[str, Any] | None = None  # a runtime pod's embedded instance, until its pod-IP relay runs
    probed: frozenset[str] | None = None  # the containers whose readinessProbe is run (None: all)
    restart: dict[str, Callable[[], int]] = field(default_factory=dict)  # container -> start it again: its PID
    restarts: dict[str, int] = field(default_factory=dict)  # the container's restartCount
    steps: dict[str, int] = field(default_factory=dict)  # restarts since its back-off last started over
    exited_at: dict[str, float] = field(default_factory=dict)  # a container waiting out its back-off
    restarted_at: dict[str, float] = field(default_factory=dict)


class Backer:
    def __init__(self, root: Path, holder: int, token_for: TokenFor, kubeconfig_for: KubeconfigFor,
                 engine: str = engines.EMBEDDED) -> None:
        self.root, self.holder, self.token_for, self.kubeconfig_for = root, holder, token_for, kubeconfig_for
        self.engine = engine
        self.reference = refpod.ReferencePods(root / "reference", holder)
        self.pods: dict[tuple[str, str], Backed] = {}
        self.etcd_bridges: dict[int, tuple[int, int]] = {}  # etcd Service port -> (port here, bridge PID)
        self._complaints: set[str] = set()

    def reconcile(self, kube: Any) -> None:
        api = kube.core.api_client
        listed = [api.sanitize_for_serialization(p) for p in kube.core.list_pod_for_all_namespaces().items]
        wanted = {}
        for pod in listed:
            meta, status = pod["metadata"], pod.get("status") or {}
            if meta.get("deletionTimestamp") or status.get("phase") != "Running" or not status.get("podIP"):
                continue
            if images.runs_here(pod) or runtimepod.is_runtime_pod(pod):
                wanted[(meta["namespace"], meta["name"])] = pod
        present = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in listed}
        for key in [k for k, b in self.pods.items() if k not in wanted or wanted[k]["metadata"]["uid"] != b.uid]:
            # Deleted with no grace period (the object is gone at once) or replaced: SIGKILL, as the kubelet kills a
            # force-deleted pod's containers; a pod in its grace period gets SIGTERM first.
            pod = present.get(key)
            self._stop(key, kill=pod is None or pod["metadata"]["uid"] != self.pods[key].uid
                       or not pod["metadata"].get("deletionGracePeriodSeconds"))
        for key, pod in wanted.items():
            if key not in self.pods:
                try:
                    self._start(kube, pod)
                except (ToolError, ApiException, OSError) as error:  # KubeletError, and an engine that cannot start
                    self._complain(f"pod {key[0]}/{key[1]}: {str(error).splitlines()[0]}")
            else:
                self._refresh(kube, pod)

    def stop(self) -> None:
        for key in list(self.pods):
            self._stop(key)
        for pid in [pid for _port, pid in self.etcd_bridges.values()] + list(self.reference.egress_pids().values()):
            if procs.alive(pid):
                procs.stop(pid, group=True)

    # ---- one pod -----------------------------------------------------------------------------------
    def _objects(self, kube: Any, namespace: str) -> Objects:
        api = kube.core.api_client
        cms = {c["metadata"]["name"]: c for c in
               (api.sanitize_for_serialization(i) for i in kube.core.list_namespaced_config_map(namespace).items)}
        secrets = {s["metadata"]["name"]: s for s in
                   (api.sanitize_for_serialization(i) for i in kube.core.list_namespaced_secret(namespace).items)}
        return Objects(cms, secrets)

    def _start(self, kube: Any, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        objects = self._objects(kube, meta["namespace"])
        where = self.root / meta["namespace"] / meta["name"]
        backed = Backed(meta["uid"])
        mounts = volumes.materialise(pod, objects, where / "volumes", token=self._tokens(pod, backed))
        if runtimepod.is_runtime_pod(pod):
            self._start_runtime(kube, pod, objects, mounts, where, backed)
            return
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        kubeconfig = self.kubeconfig_for(meta["namespace"], self.token_for(meta["namespace"], account, "",
                                                                            TOKEN_SECONDS), where / "kubeconfig")
        hosts = self._hosts(kube, meta["namespace"], where / "hosts")

        def container(spec: dict[str, Any], kind: str) -> images.Container:
            tmp = where / kind / spec["name"] / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            return images.Container(spec, pod, podenv.resolve(pod, spec["name"], objects),
                                    mounts.get(spec["name"], {}), tmp, kubeconfig, kube)

        for spec in (pod.get("spec") or {}).get("initContainers") or []:
            images.INIT_PROGRAMS[images.image_name(spec["image"])](container(spec, "init"))
        # What the init containers made (the etcd pod's Secrets) is there for the containers' env, as in a pod.
        objects = self._objects(kube, meta["namespace"])
        programs = []
        for spec in pod["spec"]["containers"]:
            c = container(spec, "containers")
            programs.append((spec["name"], c, images.PROGRAMS[images.image_name(spec["image"])](c)))
        # Only a pod whose every container could be made is backed; a failed one is tried again next pass.
        self.pods[key] = backed
        for name, c, program in programs:
            backed.pids[name] = self._spawn(program, c.env, hosts, where / f"{name}.log")
            self._save()
            backed.restart[name] = self._restarter(key, c, program, hosts, where / f"{name}.log")
        for _name, c, _program in programs:
            self._post_start(key, c)

    def _post_start(self, key: tuple[str, str], c: images.Container) -> None:
        if (c.spec.get("lifecycle") or {}).get("postStart"):
            hook = images.POST_START.get(images.image_name(c.spec["image"]))
            if hook is None:
                self._complain(f"pod {key[0]}/{key[1]}: container {c.spec['name']}: its postStart hook is not run "
                               "here")
            else:
                hook(c, self.holder)

    def _restarter(self, key: tuple[str, str], c: images.Container, program: images.Program, hosts: Path,
                   log: Path) -> Callable[[], int]:
        """The container started again, as the kubelet restarts it (restartPolicy Always, the controller
        Deployments' default): its program, then its postStart hook."""
        def restart() -> int:
            pid = self._spawn(program, c.env, hosts, log)
            self._post_start(key, c)
            return pid
        return restart

    def _start_runtime(self, kube: Any, pod: dict[str, Any], objects: Objects, mounts: dict[str, dict[str, Path]],
                       where: Path, backed: Backed) -> None:
        """The engine's processes that play every container of a runtime pod. Embedded: one instance, whose relay
        comes once it has bound its ports; reference: runtimepod's pods with their relays, published at once."""
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        envs = {c["name"]: podenv.resolve(pod, c["name"], objects) for c in pod["spec"]["containers"]}
        settings = runtimepod.settings(pod, envs, mounts)
        if self.engine == engines.REFERENCE:
            hosts = self._hosts(kube, meta["namespace"], where / "hosts")
            started = self.reference.start(key, pod, settings, hosts, where / "reference")
            self.pods[key] = backed
            played_by = started["pids"]["pod"]
            backed.pids.update(started["pids"])
            publish.publish(kube, meta["name"], meta["namespace"], meta["uid"], meta.get("annotations") or {},
                            started["endpoints"], engines.REFERENCE, started["commit"])
        else:
            config = runtimepod.instance_config(settings, self._etcd_bridge(settings.etcd), where / "instance")
            backed.instance = control.start_instance(config, where / "instance")
            self.pods[key] = backed
            played_by = backed.instance["pid"]
        for name in envs:  # one process plays them all: each container lives and dies with it
            backed.pids[name] = played_by
        # Only mm's probe (/ready on 8089) reaches the engine; oauth-proxy's (HTTPS /oauth/healthz) has nothing
        # to answer it here (docs/fidelity.md).
        backed.probed = frozenset({runtimepod.MM_CONTAINER})
        self._save()

    def _etcd_bridge(self, etcd: runtimepod.Etcd) -> str:
        """The cluster's etcd as this machine's processes reach it: a bridge into the pod network, where the etcd
        pod listens on every address (its Service's port, 127.0.0.1 there)."""
        port = urlsplit(etcd.endpoints.split(",")[0]).port or 2379
        if port not in self.etcd_bridges or not procs.alive(self.etcd_bridges[port][1]):
            outside = free_port()
            routes = self.root / f"etcd-bridge-{port}.json"
            routes.write_text(json.dumps([["127.0.0.1", outside, port]]), encoding="utf-8")
            log = self.root / f"etcd-bridge-{port}.log"
            pid = spawn([sys.executable, "-m", "mmgitops.lab.bridge", "--holder", self.holder, "--routes", routes],
                        log).pid
            self.etcd_bridges[port] = (outside, pid)
            self._save()
        return f"http://127.0.0.1:{self.etcd_bridges[port][0]}"

    def _relay_when_bound(self, kube: Any, pod: dict[str, Any], backed: Backed) -> None:
        """Once the instance has bound its ports: the pod IP's 8033, 8008, 2112 and 8089 relayed to them, and the
        pod's PortForward and annotations pointing at them (lab/kubelet/publish.py)."""
        if backed.instance is None:
            return
        bound = control.endpoints(backed.instance)
        if bound is None:
            return
        ports = {name: int(url.rstrip("/").split(":")[-1].split("/")[0]) for name, url in bound.items()}
        ip = pod["status"]["podIP"]
        routes = tuple((ip, pod_port, ports[name]) for pod_port, name in runtimepod.POD_PORTS.items())
        where = self.root / pod["metadata"]["namespace"] / pod["metadata"]["name"]
        backed.pids["pod-ip-relay"] = egress.start(self.holder, [], where / "relay.log", routes=routes)
        backed.instance = None
        self._save()
        meta = pod["metadata"]
        publish.publish(kube, meta["name"], meta["namespace"], meta["uid"], meta.get("annotations") or {},
                        {str(pod_port): f"127.0.0.1:{ports[name]}" for pod_port, name in runtimepod.POD_PORTS.items()},
                        engines.EMBEDDED)

    def _spawn(self, program: images.Program, env: dict[str, str], hosts: Path, log: Path) -> int:
        # unshare -m: the hosts file is this process's alone; netns.inside: the pod network, and the program dies
        # with the stand-ins, as a container dies with its kubelet's pod sandbox here.
        return spawn(netns.with_hosts(list(program.argv), hosts), log, env=images.environ(program.env, env),
                     cwd=program.cwd, preexec_fn=netns.inside(self.holder, die=True)).pid

    def _hosts(self, kube: Any, namespace: str, path: Path) -> Path:
        """/etc/hosts for a pod of `namespace`: every Service with a ClusterIP under the names cluster DNS gives it
        (`svc.ns.svc.cluster.local`, `svc.ns.svc`, `svc.ns`, and `svc` for the pod's own namespace, which DNS
        reaches through the pod's search path)."""
        lines = ["127.0.0.1 localhost"]
        for svc in kube.core.list_service_for_all_namespaces().items:
            ip = svc.spec.cluster_ip
            if not ip or ip == "None":
                continue
            name, ns = svc.metadata.name, svc.metadata.namespace
            names = [f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}.svc", f"{name}.{ns}"]
            lines.append(" ".join([ip, *names, *([name] if ns == namespace else [])]))
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "\n".join(lines) + "\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            # in place, not by rename: the running programs see this inode through their bind mount
            path.write_text(text, encoding="utf-8")
        return path

    def _refresh(self, kube: Any, pod: dict[str, Any]) -> None:
        """Keep mounted ConfigMaps and Secrets current, as the kubelet's sync loop does."""
        meta = pod["metadata"]
        backed = self.pods[(meta["namespace"], meta["name"])]
        self._relay_when_bound(kube, pod, backed)
        try:
            volumes.materialise(pod, self._objects(kube, meta["namespace"]), self.root / meta["namespace"] /
                                meta["name"] / "volumes", token=self._tokens(pod, backed))
        except KubeletError as error:
            self._complain(f"pod {meta['namespace']}/{meta['name']}: {error}")
        self._hosts(kube, meta["namespace"], self.root / meta["namespace"] / meta["name"] / "hosts")
        self._follow_readiness(kube, pod, backed)
        for name, pid in list(backed.pids.items()):
            if procs.alive(pid):
                continue
            log = self.root / meta["namespace"] / meta["name"] / f"{name}.log"
            if name not in backed.restart:  # a runtime pod's engine: not restarted here (docs/fidelity.md)
                self._complain(f"pod {meta['namespace']}/{meta['name']}: container {name} exited (log {log})")
            else:
                self._restart_when_due(meta["namespace"], meta["name"], name, backed, log)

    def _restart_when_due(self, namespace: str, pod: str, name: str, backed: Backed, log: Path) -> None:
        """The kubelet's crash-loop back-off: the first restart at once, then 10 s, doubling up to 5 minutes; a
        container that ran more than twice the cap since its last restart starts over at once (client-go's
        flowcontrol.Backoff, `hasExpired`, which kuberuntime_manager.go doBackOff consults)."""
        now = time.monotonic()
        exited = backed.exited_at.setdefault(name, now)
        if exited - backed.restarted_at.get(name, exited) > 2 * MAX_BACKOFF_S:
            backed.steps[name] = 0
        step = backed.steps.get(name, 0)
        if now - exited < (0.0 if step == 0 else min(BACKOFF_S * 2 ** (step - 1), MAX_BACKOFF_S)):
            return
        del backed.exited_at[name]
        backed.steps[name], backed.restarted_at[name] = step + 1, now
        count = backed.restarts[name] = backed.restarts.get(name, 0) + 1
        print(f"kubelet: pod {namespace}/{pod}: container {name} exited; restart {count} (log {log})",
              file=sys.stderr, flush=True)
        try:
            backed.pids[name] = backed.restart[name]()
        except (KubeletError, OSError) as error:
            self._complain(f"pod {namespace}/{pod}: container {name}: restart {count} failed: {error}")
        self._save()

    def _follow_readiness(self, kube: Any, pod: dict[str, Any], backed: Backed) -> None:
        """Ready as the kubelet's prober says: every container's process alive and its readinessProbe passing.
        kwok marks a pod Ready as soon as it runs; for a backed pod the conditions follow its processes instead,
        so the Service's Endpoints (and a Deployment's availability) list it only while it answers."""
        containers = pod["spec"]["containers"]
        probed = [c for c in containers if backed.probed is None or c["name"] in backed.probed]
        ready = all(procs.alive(backed.pids.get(c["name"], 0)) for c in containers) and all(
            network.probe(self.holder, pod["status"]["podIP"], c.get("readinessProbe") or {}, c) for c in probed)
        have = {c.get("type"): c.get("status") for c in pod["status"].get("conditions") or []}
        wanted = "True" if ready else "False"
        if have.get("Ready") == wanted and have.get("ContainersReady") == wanted:
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [{"type": kind, "status": wanted, "lastTransitionTime": now,
                       **({} if ready else {"reason": "ContainersNotReady"})} for kind in ("Ready", "ContainersReady")]
        kube.core.patch_namespaced_pod_status(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                              {"status": {"conditions": conditions}})

    def _tokens(self, pod: dict[str, Any], backed: Backed) -> Callable[[str, int], str]:
        """The pod's projected service-account tokens (kube-api-access-*), one TokenRequest per audience."""
        namespace = pod["metadata"]["namespace"]
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"

        def token(audience: str, seconds: int) -> str:
            if (audience, seconds) not in backed.tokens:
                backed.tokens[(audience, seconds)] = self.token_for(namespace, account, audience, seconds)
            return backed.tokens[(audience, seconds)]
        return token

    def _stop(self, key: tuple[str, str], kill: bool = False) -> None:
        backed = self.pods.pop(key)
        self.reference.stop(key)
        for pid in set(backed.pids.values()):
            if kill:
                procs.kill(pid)
            elif procs.alive(pid):
                procs.stop(pid, group=True)
        self._save()

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pids = {f"{ns}/{pod}/{name}": pid for (ns, pod), b in self.pods.items() for name, pid in b.pids.items()}
        pids.update({f"etcd bridge {port}": pid for port, (_here, pid) in self.etcd_bridges.items()})
        pids.update(self.reference.egress_pids())
        (self.root / PIDS_FILE).write_text(json.dumps(pids, indent=2), encoding="utf-8")

    def _complain(self, text: str) -> None:
        if text not in self._complaints:
            self._complaints.add(text)
            print(f"kubelet: {text}", file=sys.stderr, flush=True)


def recorded(root: Path) -> dict[str, int]:
    """The processes a (possibly killed) backer recorded: name -> PID."""
    try:
        return {str(k): int(v) for k, v in json.loads((root / PIDS_FILE).read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        return {}
