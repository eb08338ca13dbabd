"""pod-identity-webhook: a drop-in replacement for the Amazon EKS Pod Identity Webhook."""

#: The one place the version is written: the package metadata (pyproject.toml reads it),
#: `--version` and the chart's appVersion follow it (tests/test_project.py checks them).
__version__ = "0.1.0"
