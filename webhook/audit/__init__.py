"""The Pod auditor (--audit-pods): Pods that run without the credentials they should have."""
