// Package crds only imports the Prometheus Operator's API types, so that `go mod tidy` keeps
// them (and everything controller-gen needs to load them) in go.mod and go.sum.
package crds

import (
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)
