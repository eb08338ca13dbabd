"""IRSA without EKS, pure: the issuer's discovery document and JWKS, the kube-apiserver
flags, and IAM trust policies. The `oidc` and `trust-policy` commands do the I/O.
"""
