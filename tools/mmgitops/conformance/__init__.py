"""The conformance suite's view of a ModelMesh data plane: a Target, its implementations and their clients.

The checks in tests/conformance speak only to a `Target`, so the same checks run against the local mesh,
a ModelMesh endpoint list, or a cluster (cluster/).
"""
