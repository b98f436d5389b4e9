package probes

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestExternalLinkFuncs: in an externally linked binary (cgo, as
// distributions build Go programs) the C runtime's code comes first in
// .text, and its data before Go's: the functions' addresses must still be
// the symbol table's, and type names found, in normal and
// position-independent builds.
func TestExternalLinkFuncs(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc: cannot link externally")
	}
	dir := t.TempDir()
	src := "package main\n\n// int twice(int x) { return 2 * x; }\nimport \"C\"\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(C.twice(21)) }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module extlink\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-ldflags=-linkmode=external"}, {"-buildmode=pie", "-ldflags=-linkmode=external"}} {
		bin := filepath.Join(dir, "prog")
		cmd := exec.Command("go", append(append([]string{"build", "-o", bin}, args...), ".")...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %v: %v\n%s", args, err, out)
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		syms, err := f.Symbols()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		b, err := Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		checked := 0
		for _, s := range syms {
			if s.Name != "main.main" && s.Name != "runtime.main" {
				continue
			}
			fn, ok := b.Func(s.Name)
			if !ok || fn.Entry != s.Value {
				t.Errorf("%v: %s at %#x, the symbol table says %#x", args, s.Name, fn.Entry, s.Value)
			}
			checked++
		}
		// Type names count from runtime.types, past the C data too.
		if addr, ok := b.TypeAddr("*os.File"); !ok || b.typeName(addr) != "*os.File" {
			t.Errorf("%v: *os.File's type descriptor not found (%#x, %v)", args, addr, ok)
		}
		b.Close()
		if checked != 2 {
			t.Errorf("%v: %d of the 2 functions in the symbol table", args, checked)
		}
	}
}
