"""Thin stand-ins for the operators that cannot run on the local cluster.

Each one sets only the status fields the real operator sets, with the same names and values,
and claims nothing it cannot honestly claim: the OLM stand-in says a Subscription's CSV
Succeeded (the CRDs were installed by `local cluster up`), the RHOAI stand-in says the DSCI and
DSC are Ready once the objects the real operator would create exist, the GPU and NFD stand-ins
report ClusterPolicy `ready` and NodeFeatureDiscovery `Available` only when the simulated nodes
carry the labels those operators would put there, and the OpenShift GitOps stand-in writes the ArgoCD
CR's health checks into its instance's argocd-cm, as the operator does. They run in one process
(`python -m mmgitops.lab.standins`), started and stopped by `mmgitops local cluster up/down`.
"""
