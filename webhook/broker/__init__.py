"""The credentials broker: EKS Auth's AssumeRoleForPodIdentity over TLS, for self-managed
clusters. It is the only component that holds AWS credentials (its own, from the default chain);
it checks each Pod's token with a TokenReview, finds the Pod's PodIdentityAssociation and calls
STS AssumeRole with EKS's session tags. See docs/self-hosted-pod-identity.md.
"""
