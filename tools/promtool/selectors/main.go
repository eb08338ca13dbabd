// Command selectors parses PromQL expressions with Prometheus' own parser and prints the series
// each one reads: the metric name and label matchers of every vector selector, and the labels
// it groups or matches on. tests/monitoring uses it to check that the alert rules and the
// Grafana dashboard only read series the webhook exports.
//
// Input on stdin: a JSON array of expressions. Output on stdout: a JSON array with, for each
// expression, {"selectors": [...], "labels": [...]} or {"error": "..."}.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/prometheus/promql/parser"
)

type matcher struct {
	Label string `json:"label"`
	Op    string `json:"op"`
	Value string `json:"value"`
}

type selector struct {
	Metric   string    `json:"metric"`
	Matchers []matcher `json:"matchers"`
}

type result struct {
	Selectors []selector `json:"selectors,omitempty"`
	Labels    []string   `json:"labels,omitempty"`
	Error     string     `json:"error,omitempty"`
}

func inspect(expr string) result {
	tree, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return result{Error: err.Error()}
	}
	out := result{Selectors: []selector{}}
	labels := map[string]bool{}
	parser.Inspect(tree, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			s := selector{Metric: n.Name, Matchers: []matcher{}}
			for _, m := range n.LabelMatchers {
				if m.Name == "__name__" {
					if s.Metric == "" {
						s.Metric = m.Value
					}
					continue
				}
				s.Matchers = append(s.Matchers, matcher{m.Name, m.Type.String(), m.Value})
			}
			out.Selectors = append(out.Selectors, s)
		case *parser.AggregateExpr:
			for _, l := range n.Grouping {
				labels[l] = true
			}
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				for _, l := range n.VectorMatching.MatchingLabels {
					labels[l] = true
				}
				for _, l := range n.VectorMatching.Include {
					labels[l] = true
				}
			}
		}
		return nil
	})
	for l := range labels {
		out.Labels = append(out.Labels, l)
	}
	sort.Strings(out.Labels)
	return out
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintf(os.Stderr, "selectors: stdin is not a JSON array of strings: %v\n", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(exprs))
	for _, expr := range exprs {
		results = append(results, inspect(expr))
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(results); err != nil {
		fmt.Fprintf(os.Stderr, "selectors: %v\n", err)
		os.Exit(1)
	}
}
