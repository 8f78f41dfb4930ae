"""Run every stand-in in one loop until stopped: python -m mmgitops.lab.standins --kubeconfig FILE --state DIR."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from kubernetes import config
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from mmgitops.lab.standins import gitops, gpu, olm, rhoai
from mmgitops.lab.standins.kube import Kube
from mmgitops.lab.standins.modelmesh.controller import Controller


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mmgitops.lab.standins", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state", type=Path, required=True,
                        help="where the ModelMesh stand-in keeps its mesh instances' files")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    kube = Kube(config.new_client_from_config(config_file=args.kubeconfig))
    modelmesh = Controller(args.state)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        while not stopping:
            for name, reconcile in (("olm", olm.reconcile), ("rhoai", rhoai.reconcile), ("gpu", gpu.reconcile),
                                    ("gitops", gitops.reconcile), ("modelmesh", modelmesh.reconcile)):
                try:
                    reconcile(kube)
                except (ApiException, HTTPError) as exc:
                    # A conflict or a restarting API server: the next pass tries again.
                    print(f"{name}: {str(exc).splitlines()[0]}", file=sys.stderr, flush=True)
            time.sleep(args.interval)
    finally:
        modelmesh.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
