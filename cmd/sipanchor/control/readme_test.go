package control

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// TestREADMEListsEveryMetric keeps the README's metrics list and
// metrics.go in step: every metric /metrics declares (with its HELP line)
// is named in the README, and the README names no metric that does not
// exist.
func TestREADMEListsEveryMetric(t *testing.T) {
	exported := declaredMetrics(t, "metrics.go")
	if len(exported) < 10 {
		t.Fatalf("found only %v in metrics.go: has the metric helper been renamed?", exported)
	}
	b, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile(`\bsipanchor_[a-z0-9_]+`).FindAllString(string(b), -1) {
		if !slices.Contains(documented, m) {
			documented = append(documented, m)
		}
	}
	for _, m := range exported {
		if !slices.Contains(documented, m) {
			t.Errorf("metric %s is exported but not in README.md", m)
		}
	}
	for _, m := range documented {
		if !slices.Contains(exported, m) {
			t.Errorf("README.md names metric %s, which /metrics does not export", m)
		}
	}
}

// declaredMetrics returns the names passed to metric(name, type, help) in
// file: each is one metric family with its HELP and TYPE lines.
func declaredMetrics(t *testing.T, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 3 {
			return true
		}
		if fn, ok := call.Fun.(*ast.Ident); !ok || fn.Name != "metric" {
			return true
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Errorf("metric declared with a name that is not a literal at %v", call.Pos())
			return true
		}
		name, _ := strconv.Unquote(lit.Value)
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
		return true
	})
	return names
}
