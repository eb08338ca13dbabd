"""Certificates: issuing them (pure), serving them over TLS with reload, and keeping them
in a Secret and the caBundle in step without cert-manager (`--cert-bootstrap`).
"""
