"""The lab: a local cluster, the operator stand-ins, the embedded mesh and reference pods, for testing here."""
