"""The local mesh: a single-machine, ModelMesh-compatible data plane for exercising the conformance suite.

It is a test target, not a production server. This package grows in layers; the first is the
runtime layer: a real MLServer behind the `mmesh.ModelRuntime` SPI (adapter.py).
"""
