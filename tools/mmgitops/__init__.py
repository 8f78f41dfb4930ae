"""mmgitops: the GitOps configuration tools, the conformance suite and the lab of the ModelMesh-on-RHOAI 2.x
repository, one package in layers (docs/architecture.md)."""

__version__ = "0.1.0"
