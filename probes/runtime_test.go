package probes

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestTypeAddr finds *net.TCPConn's type descriptor in programs built
// normally and stripped PIE, by the local Go and by Go 1.27 (whose
// descriptors have a section of their own), and reads its name back from
// it.
func TestTypeAddr(t *testing.T) {
	dir := t.TempDir()
	src := "package main\n\nimport (\n\t\"net/http\"\n\t\"os\"\n)\n\nfunc main() {\n\tif len(os.Args) > 5 {\n\t\thttp.Get(os.Args[1])\n\t}\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module typeaddr\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []string{"local", "go1.27.3"} {
		for _, args := range [][]string{{}, {"-buildmode=pie", "-ldflags=-s -w"}} {
			bin := filepath.Join(dir, "prog")
			cmd := exec.Command("go", append(append([]string{"build", "-o", bin}, args...), ".")...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0", "GOTOOLCHAIN="+tc)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build %v: %v\n%s", args, err, out)
			}
			b, err := Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			addr, ok := b.TypeAddr("*net.TCPConn")
			if !ok {
				t.Fatalf("%s %v: *net.TCPConn not found", tc, args)
			}
			if got := b.typeName(addr); got != "*net.TCPConn" {
				t.Errorf("%s %v: descriptor at %#x is named %q", tc, args, addr, got)
			}
			if _, ok := b.TypeAddr("*net.NoSuchType"); ok {
				t.Errorf("%v: found a type that does not exist", args)
			}
			b.Close()
		}
	}
}

// TestPlausibleTypeName: what a type name read through offsets that do not
// fit the binary looks like is refused.
func TestPlausibleTypeName(t *testing.T) {
	for s, want := range map[string]bool{
		"*errors.errorString": true, "map[string]interface {}": true, "main.T[go.shape.int]": true, "*main.Ünicode": true,
		"": false, "A\x00\x00\x00": false, "\xff\xfe": false, "a\nb": false, "x\x7f": false,
	} {
		if got := plausibleTypeName(s); got != want {
			t.Errorf("plausibleTypeName(%q) = %v, want %v", s, got, want)
		}
	}
}
