"""The real modelmesh-serving controller on the local cluster: built from the pinned RHOAI source, installed as
the RHOAI operator installs it; its pod runs the real binary through the pod backer (lab/kubelet)."""
