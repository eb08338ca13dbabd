"""The node agent: the SDKs' container-credentials endpoint on each node.

It answers `GET /v1/credentials` on 169.254.170.23 and fd00:ec2::23 (a link it sets up itself),
passes the Pod's token to the broker with its own Pod-bound token, and caches the answer until
shortly before it expires. It holds no AWS credentials of its own.
"""
