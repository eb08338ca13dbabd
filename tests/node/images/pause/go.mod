module example.invalid/pod-identity-webhook/tests/node/images/pause

go 1.26
