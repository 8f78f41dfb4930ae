"""Reference pods: the real ModelMesh data plane (ModelMesh, rest-proxy, MLServer adapter) built from the
upstream source snapshots and run on this machine, for checking the conformance suite against the real thing."""
