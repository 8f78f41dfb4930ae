"""The conformance suite: checks that a ModelMesh data plane behaves as ModelMesh promises, with measurements.

The checks (checks/) speak only to a `Target` (target.py), so the same checks run against ModelMesh pods given
by address or started locally (mesh_target.py) and against a cluster (cluster/). plugin.py is the pytest plugin
that `pytest --pyargs mmgitops.conformance.checks` and `mmgitops conform` load; this package imports nothing of
mmgitops but the ModelMesh layer (mmgitops.modelmesh) and the error type.
"""
