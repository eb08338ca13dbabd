"""Where identities come from: the in-memory store the admission path reads, and what
feeds it (the Kubernetes reflectors and live GET, polled files, manifests for `mutate`).
"""
