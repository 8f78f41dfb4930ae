"""The schemas objects are checked against: Kubernetes' built-in kinds and the CRDs of pinned Go modules."""
