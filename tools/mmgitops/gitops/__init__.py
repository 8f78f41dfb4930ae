"""The GitOps half: render, validate, plan and apply the Kustomize profiles, offline or on a cluster."""
