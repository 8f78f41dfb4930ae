"""The conformance suite's checks: pytest modules, one behaviour per test."""
