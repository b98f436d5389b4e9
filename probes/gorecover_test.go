package probes

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// supportedToolchains are the newest patch of every release the agent
// supports, oldest first.
var supportedToolchains = []string{"go1.19.13", "go1.20.14", "go1.21.13", "go1.22.12", "go1.23.12",
	"go1.24.13", "go1.25.8", "go1.26.8", "go1.27.0", "go1.27.3"}

var (
	refMu   sync.Mutex
	refDir  string
	refBins = map[string]string{}
)

// refBinary builds (once per test binary) a small program that starts a
// goroutine with toolchain, with args added to go build, and returns its
// path. The toolchain's own go command builds it, with a module cache of its
// own: Go 1.19's go command cannot build from a GOROOT that lies inside the
// module cache, where GOTOOLCHAIN puts it.
func refBinary(t *testing.T, toolchain string, args ...string) string {
	t.Helper()
	refMu.Lock()
	defer refMu.Unlock()
	key := toolchain + " " + strings.Join(args, " ")
	if p, ok := refBins[key]; ok {
		return p
	}
	if refDir == "" {
		d, err := os.MkdirTemp("", "tcagent-refbins-")
		if err != nil {
			t.Fatal(err)
		}
		refDir = d
		src := "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tdone := make(chan int)\n\tgo func() { done <- 1 }()\n\tfmt.Println(<-done)\n}\n"
		if err := os.WriteFile(filepath.Join(d, "main.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "go.mod"), []byte("module ref\n\ngo 1.19\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goroot := exec.Command("go", "env", "GOROOT")
	goroot.Env = append(os.Environ(), "GOTOOLCHAIN="+toolchain)
	out, err := goroot.Output()
	if err != nil {
		t.Fatalf("fetch %s: %v", toolchain, err)
	}
	bin := filepath.Join(refDir, strings.NewReplacer(" ", "_", "=", "_", "/", "_").Replace(key))
	cmd := exec.Command(filepath.Join(strings.TrimSpace(string(out)), "bin", "go"), append(append([]string{"build", "-o", bin}, args...), ".")...)
	cmd.Dir = refDir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0",
		"GOMODCACHE="+filepath.Join(refDir, "modcache"), "GOROOT=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build with %s %v: %v\n%s", toolchain, args, err, b)
	}
	refBins[key] = bin
	return bin
}

// TestGFromCode recovers runtime.g's offsets from the machine code of
// reference programs built by every supported release, normal and PIE,
// and compares them with the same programs' DWARF; the stripped builds
// (which have no DWARF) must give the same offsets.
func TestGFromCode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program with every supported Go release")
	}
	for _, tc := range supportedToolchains {
		t.Run(tc, func(t *testing.T) {
			for _, mode := range [][]string{nil, {"-buildmode=pie"}} {
				b, err := Open(refBinary(t, tc, mode...))
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				goid, okG, err := b.dwarfField("runtime.g", "goid")
				if err != nil || !okG {
					t.Fatalf("%v: DWARF has no runtime.g.goid: %v", mode, err)
				}
				stack, _, _ := b.dwarfField("runtime.g", "stack")
				hi, okH, _ := b.dwarfField("runtime.stack", "hi")
				if !okH {
					t.Fatalf("%v: DWARF has no runtime.stack.hi", mode)
				}
				parent, okP, _ := b.dwarfField("runtime.g", "parentGoid")
				if !okP {
					parent = 0 // Go 1.19 and 1.20
				}
				g, s, p, err := b.gFromCode()
				if err != nil {
					t.Fatalf("%v: %v", mode, err)
				}
				if int64(g) != goid || int64(s) != stack+hi || int64(p) != parent {
					t.Errorf("%v: machine code says goid %d, stack.hi %d, parentGoid %d; DWARF %d, %d, %d", mode, g, s, p, goid, stack+hi, parent)
				}
				sb, err := Open(refBinary(t, tc, append(mode, "-ldflags=-s -w")...))
				if err != nil {
					t.Fatal(err)
				}
				defer sb.Close()
				if sb.HasDWARF {
					t.Fatalf("%v: the stripped build has DWARF", mode)
				}
				g2, s2, p2, err := sb.gFromCode()
				if err != nil {
					t.Fatalf("%v stripped: %v", mode, err)
				}
				if g2 != g || s2 != s || p2 != p {
					t.Errorf("%v stripped: %d, %d, %d; with symbols %d, %d, %d", mode, g2, s2, p2, g, s, p)
				}
			}
		})
	}
}
