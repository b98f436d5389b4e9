package probes

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tcagent/tcagent/internal/gotoolchain"
)

var (
	progMu   sync.Mutex
	progDir  string
	progBins = map[string]string{}
)

// program builds (once per test binary) the one-file program src, named
// name, with toolchain and args added to go build, and returns its path
// (gotoolchain.Build, with a module cache of its own; the build cache
// makes later runs quick).
func program(t *testing.T, name, src, toolchain string, args ...string) string {
	t.Helper()
	progMu.Lock()
	defer progMu.Unlock()
	key := name + " " + toolchain + " " + strings.Join(args, " ")
	if p, ok := progBins[key]; ok {
		return p
	}
	if progDir == "" {
		d, err := os.MkdirTemp("", "tcagent-probes-bins-")
		if err != nil {
			t.Fatal(err)
		}
		progDir = d
	}
	dir := filepath.Join(progDir, name)
	if _, err := os.Stat(dir); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+name+"\n\ngo 1.19\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(progDir, strings.NewReplacer(" ", "_", "=", "_", "/", "_").Replace(key))
	if err := gotoolchain.Build(toolchain, dir, bin, filepath.Join(progDir, "modcache"), append(args, ".")...); err != nil {
		t.Fatal(err)
	}
	progBins[key] = bin
	return bin
}
