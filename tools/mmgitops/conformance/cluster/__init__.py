"""The `cluster` target: a conformance run's own namespace, runtimes and InferenceServices on a real API server."""
