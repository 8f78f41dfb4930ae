"""Run every stand-in in one loop until stopped: python -m mmgitops.standins --kubeconfig FILE."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from kubernetes import config
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from mmgitops.standins import gpu, olm, rhoai
from mmgitops.standins.kube import Kube


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mmgitops.standins", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    kube = Kube(config.new_client_from_config(config_file=args.kubeconfig))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    while not stopping:
        for part in (olm, rhoai, gpu):
            try:
                part.reconcile(kube)
            except (ApiException, HTTPError) as exc:
                # A conflict or a restarting API server: the next pass tries again.
                print(f"{part.__name__}: {str(exc).splitlines()[0]}", file=sys.stderr, flush=True)
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
