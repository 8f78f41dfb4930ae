"""The command line: one entry point over the GitOps tools, the conformance suite and the lab."""
