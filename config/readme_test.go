package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEConfigExample keeps the README's config example loadable.
func TestREADMEConfigExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```toml\n")
	if !ok {
		t.Fatal("README has no toml example")
	}
	example, _, _ := strings.Cut(rest, "```")
	if _, err := Parse("README.md", []byte(example)); err != nil {
		t.Fatalf("README example: %v", err)
	}
}
