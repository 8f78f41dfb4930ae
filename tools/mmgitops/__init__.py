"""mmgitops: render, validate, plan and apply the ModelMesh-on-RHOAI GitOps repository."""

__version__ = "0.1.0"
