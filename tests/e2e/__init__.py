"""End-to-end tier: the webhook process behind a real kube-apiserver and etcd (see README)."""
