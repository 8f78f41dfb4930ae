"""`mmgitops local argocd up | status | down`: a real Argo CD on the running local cluster.

Redis, the repo server and the application controller, built from the pinned argo-cd module, plus a git daemon
that serves this checkout; each process on 127.0.0.1 and stopped by PID. The application controller serves
its metrics on every interface (controller/appcontroller.go: "0.0.0.0:<metrics-port>", no flag changes it), so
it runs in a network namespace of its own that has only a loopback, with bridges out to the API server, Redis
and the repo server, as the reference pods do.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgitops import procs
from mmgitops.errors import ToolError
from mmgitops.lab import egress, netns, prereqs
from mmgitops.lab.argocd import build, gitserver, objects, reposource
from mmgitops.lab.cluster import cluster, identity
from mmgitops.lab.ports import free_port
from mmgitops.lab.spawn import spawn
from mmgitops.lab.state import read_json, state_root


def state_dir() -> Path:
    return state_root() / f"argocd-{cluster.name()}"


def read_state() -> dict[str, Any] | None:
    return read_json(state_dir() / "argocd.json")


def _write_state(info: dict[str, Any]) -> None:
    (state_dir() / "argocd.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


def _redis() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise ToolError("the local Argo CD needs `redis-server` (Debian package redis-server)")
    return found


def _wait_port(what: str, port: int, pid: int, log: Path, timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procs.alive(pid):
            raise ToolError(f"{what} exited at startup (log {log})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise ToolError(f"{what} did not listen on 127.0.0.1:{port} in {timeout:.0f} s (log {log})")


def publish(root: Path, info: dict[str, Any]) -> gitserver.Snapshot:
    """Serve the checkout's working tree now, with the repo-source patch that points the apps at this server."""
    repo = gitserver.init(state_dir() / "git")
    generated = reposource.generated(root, info["repo_url"], gitserver.BRANCH)
    return gitserver.snapshot(root, repo, generated)


def up(root: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    from kubernetes import config as kconfig

    found = cluster.read_state()
    if found is None:
        raise ToolError("no local cluster is up: `mmgitops local cluster up` first")
    if read_state():
        raise ToolError(f"a local Argo CD is already up for the cluster {cluster.name()!r}: "
                        "`mmgitops local argocd down` first")
    prereqs.check("the local Argo CD (its application controller runs in a network namespace of its own; without "
                  "root, `mmgitops demo --apply` installs the profile with `mmgitops apply`)", "argocd")
    redis_server = _redis()
    gitserver.git_binary()
    started = time.monotonic()
    bins, built = build.ensure(progress)
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"cluster": cluster.name(), "namespace": objects.NAMESPACE, "built": built,
                            "version": build.module()[1], "pids": {}}
    _write_state(info)  # from here on, `down` can stop whatever was started
    try:
        admin = Path(found["kubeconfig"])
        api = kconfig.new_client_from_config(config_file=str(admin))
        progress(f"creating the {objects.NAMESPACE} namespace, argocd-cm, argocd-secret and the controller's RBAC")
        objects.create(api)
        controller_kubeconfig = identity.kubeconfig(admin, objects.token(api), state / "controller.kubeconfig",
                                                    objects.CONTROLLER_SA, found["server"], objects.NAMESPACE)

        ports = {"git": free_port(), "redis": free_port(), "repo_server": free_port(),
                 "repo_server_metrics": free_port(), "controller_metrics": free_port()}
        info["ports"] = ports
        info["repo_url"] = gitserver.url(ports["git"])

        progress("serving this checkout over git on 127.0.0.1")
        served = state / "git"
        gitserver.init(served)
        info["pids"]["git-daemon"] = gitserver.start(served, ports["git"], state / "git-daemon.log")
        snap = publish(root, info)
        info["snapshot"] = {"commit": snap.commit, "base": snap.base, "dirty": snap.dirty}
        _write_state(info)
        _wait_port("git daemon", ports["git"], info["pids"]["git-daemon"], state / "git-daemon.log")

        progress("starting Redis")
        log = state / "redis.log"
        info["pids"]["redis"] = spawn([redis_server, "--bind", "127.0.0.1", "--port", ports["redis"], "--save", "",
                                       "--appendonly", "no", "--dir", state], log).pid
        _write_state(info)
        _wait_port("redis-server", ports["redis"], info["pids"]["redis"], log)

        progress("starting the Argo CD repo server")
        info["pids"]["repo-server"] = _start_repo_server(bins, ports, state)
        _write_state(info)
        _wait_port("argocd-repo-server", ports["repo_server"], info["pids"]["repo-server"],
                   state / "repo-server.log")

        progress("starting the Argo CD application controller in its own network namespace")
        holder = netns.start_holder(state / "netns.log")
        info["pids"]["netns"] = holder
        _write_state(info)
        for name, port in (("apiserver", found["ports"]["apiserver"]), ("redis", ports["redis"]),
                           ("repo-server", ports["repo_server"])):
            info["pids"][f"egress-{name}"] = egress.start(holder, [port], state / f"egress-{name}.log")
            _write_state(info)
        info["pids"]["application-controller"] = _start_controller(bins, ports, state, holder, controller_kubeconfig)
        _write_state(info)
        _wait_controller(info["pids"]["application-controller"], holder, ports["controller_metrics"],
                         state / "application-controller.log")
    except BaseException:
        down(keep_logs=True)
        raise
    info["seconds"] = round(time.monotonic() - started, 1)
    _write_state(info)
    return info


def _start_repo_server(bins: build.Binaries, ports: dict[str, int], state: Path) -> int:
    work = state / "repo-server"
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    env = {**os.environ,
           # Argo CD's image puts kustomize and its own commands on PATH; so does this.
           "PATH": os.pathsep.join([str(bins.kustomize.parent), str(bins.argocd.parent), os.environ.get("PATH", "")]),
           "TMPDIR": str(work / "tmp"), "ARGOCD_GPG_ENABLED": "false", "HOME": str(work)}
    return spawn([bins.command(build.REPO_SERVER), "--address", "127.0.0.1", "--port", ports["repo_server"],
                  "--metrics-address", "127.0.0.1", "--metrics-port", ports["repo_server_metrics"],
                  "--disable-tls", "--redis", f"127.0.0.1:{ports['redis']}", "--logformat", "text"],
                 state / "repo-server.log", env=env, cwd=work).pid


def _start_controller(bins: build.Binaries, ports: dict[str, int], state: Path, holder: int,
                      kubeconfig: Path) -> int:
    env = {**os.environ, "ARGOCD_FAKE_IN_CLUSTER": "true", "KUBECONFIG": str(kubeconfig), "HOME": str(state)}
    return spawn([bins.command(build.CONTROLLER), "--namespace", objects.NAMESPACE,
                  "--redis", f"127.0.0.1:{ports['redis']}", "--repo-server", f"127.0.0.1:{ports['repo_server']}",
                  "--repo-server-plaintext", "--metrics-port", ports["controller_metrics"],
                  # Argo CD's own resync period (120 s): `sync` and the tests ask for a refresh when they commit.
                  "--status-processors", 4, "--operation-processors", 4,
                  # Since 3.0 each resource's health stays in Redis, where only the API server (not run here)
                  # reads it; in the Application it tells `sync` and the tests which resource holds an app back.
                  "--persist-resource-health", "--logformat", "text"],
                 state / "application-controller.log", env=env, preexec_fn=netns.inside(holder)).pid


def _wait_controller(pid: int, holder: int, port: int, log: Path, timeout: float = 60.0) -> None:
    """Until the controller serves its metrics (it starts them once its informers run) or fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procs.alive(pid):
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise ToolError(f"argocd-application-controller exited at startup: {' '.join(tail)} (log {log})")
        if netns.connects_inside(holder, port):
            return
        time.sleep(0.3)
    raise ToolError(f"argocd-application-controller did not become ready in {timeout:.0f} s (log {log})")


def down(keep_logs: bool = False) -> list[str]:
    """Stop every process `up` started, by PID, and remove the state (but its logs, after a failed `up`);
    the cluster's objects stay."""
    info = read_state()
    stopped = []
    if info:
        # the controller first, so that nothing it does reaches a half-stopped instance
        order = ["application-controller", "repo-server", "redis", "git-daemon"]
        pids = info.get("pids", {})
        for name in [*order, *sorted(set(pids) - set(order))]:
            pid = pids.get(name)
            if pid and procs.alive(pid):
                procs.stop(pid, group=True)
                stopped.append(f"{name} (pid {pid})")
    if keep_logs:
        (state_dir() / "argocd.json").unlink(missing_ok=True)
    elif state_dir().exists():
        shutil.rmtree(state_dir())
    return stopped


def status() -> dict[str, Any]:
    info = read_state()
    if info is None:
        return {"up": False}
    processes = {name: {"pid": pid, "running": procs.alive(pid)} for name, pid in info.get("pids", {}).items()}
    return {"up": True, **info, "processes": processes}
