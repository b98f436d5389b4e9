// Package gotoolchain builds Go programs with a chosen Go release, for the
// tests and tools that check tcagent against the binaries every release
// makes.
package gotoolchain

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build runs `go build -o out args...` in dir with toolchain (go1.N.P),
// without cgo or VCS stamping. It runs that release's own go command, with
// the module cache modcache (a directory of the caller's): Go 1.19's go
// command cannot build in module mode from a GOROOT that lies inside the
// module cache ("import of unknown directory"), which is where GOTOOLCHAIN
// puts every release it fetches.
func Build(toolchain, dir, out, modcache string, args ...string) error {
	env := exec.Command("go", "env", "GOROOT")
	env.Env = append(os.Environ(), "GOTOOLCHAIN="+toolchain)
	root, err := env.Output()
	if err != nil {
		return fmt.Errorf("fetch %s: %w", toolchain, err)
	}
	cmd := exec.Command(filepath.Join(strings.TrimSpace(string(root)), "bin", "go"), append([]string{"build", "-o", out}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOROOT=", "GOMODCACHE="+modcache,
		"GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s with %s: %v\n%s", out, toolchain, err, b)
	}
	return nil
}
