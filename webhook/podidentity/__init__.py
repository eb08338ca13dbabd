"""Pure. EKS Pod Identity for self-managed clusters: the parts with no I/O.

`associations` (the PodIdentityAssociation resource and its index), `wire` (EKS Auth's
AssumeRoleForPodIdentity request, answer and error types, as botocore's `eks-auth` model has
them), `session` (the six EKS session tags, the stable session name, cache keys) and `tokens`
(what a TokenReview says about a token, unverified JWT claims). The broker (`webhook.broker`)
and the node agent (`webhook.agent`) are the thin I/O edges around them.
"""
