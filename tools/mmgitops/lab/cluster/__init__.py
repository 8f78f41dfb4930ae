"""The local target: a real control plane with kwok nodes, for tests and for people without a cluster."""
