"""Run every stand-in, and the kubelet's part for the pods whose programs run here (lab/kubelet), in one loop until
stopped: python -m mmgitops.lab.standins --kubeconfig FILE --state DIR --pod-network PID --server URL
[--projects-port PORT --pki DIR] (the last two: serve project.openshift.io on 127.0.0.1:PORT)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from kubernetes import config
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from mmgitops.lab.cluster import identity
from mmgitops.lab.kubelet import engines
from mmgitops.lab.kubelet.backer import Backer
from mmgitops.lab.standins import gitops, gpu, odhmodel, olm, rhoai, serviceca
from mmgitops.lab.standins.kube import Kube
from mmgitops.lab.standins.projects import registry, server


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mmgitops.lab.standins", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state", type=Path, required=True, help="where the kubelet keeps its pods' files")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--projects-port", type=int, default=0,
                        help="serve the project.openshift.io API on this loopback port (0: not at all)")
    parser.add_argument("--pki", type=Path, help="kwokctl's pki directory: the project server's certificates")
    parser.add_argument("--pod-network", type=int, required=True,
                        help="the PID holding the pod network's namespace (lab/kubelet/network.py)")
    parser.add_argument("--server", required=True, help="the API server's address, for the pods' kubeconfigs")
    args = parser.parse_args()
    api = config.new_client_from_config(config_file=args.kubeconfig)
    kube = Kube(api)
    if args.projects_port:
        if args.pki is None:
            parser.error("--projects-port needs --pki")
        # Its own client: the server's threads never share a connection pool with the loop.
        server.serve(config.new_client_from_config(config_file=args.kubeconfig), args.projects_port, args.pki)

    def token_for(namespace: str, account: str, audience: str, seconds: int) -> str:
        return identity.token(api, namespace, account, seconds, audience)

    def kubeconfig_for(namespace: str, token: str, path: Path) -> Path:
        return identity.kubeconfig(Path(args.kubeconfig), token, path, "pod", args.server, namespace)

    kubelet = Backer(args.state / "pods", args.pod_network, token_for, kubeconfig_for,
                     os.environ.get(engines.ENGINE_ENV) or engines.EMBEDDED)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        while not stopping:
            for name, reconcile in (("olm", olm.reconcile), ("rhoai", rhoai.reconcile), ("gpu", gpu.reconcile),
                                    ("gitops", gitops.reconcile), ("service-ca", serviceca.reconcile),
                                    # the runtime pods' ServiceAccount first, then the kubelet's part
                                    ("odh-model-controller", odhmodel.reconcile), ("kubelet", kubelet.reconcile),
                                    ("projects", lambda _kube: registry.reconcile(api))):
                try:
                    reconcile(kube)
                except (ApiException, HTTPError) as exc:
                    # A conflict or a restarting API server: the next pass tries again.
                    print(f"{name}: {str(exc).splitlines()[0]}", file=sys.stderr, flush=True)
            time.sleep(args.interval)
    finally:
        kubelet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
