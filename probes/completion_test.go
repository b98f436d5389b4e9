package probes

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tcagent/tcagent/bpf"
)

// TestCompileCompletion: a completion probe captures its receiver at
// entry and its error where it is: from the DWARF of a spec's completion,
// or, with ErrorFrom, from the result registers or from argument registers
// kept at entry, the same with DWARF or without. It opens no span.
func TestCompileCompletion(t *testing.T) {
	dir := t.TempDir()
	src := `package main

import "errors"

type R struct{ n int }

//go:noinline
func (r *R) Close() error {
	if r.n > 0 {
		return errors.New("close")
	}
	return nil
}

type S struct{ n int }

//go:noinline
func (s *S) finish(err error) { s.n++; _ = err }

func main() {
	r, s := &R{}, &S{}
	_ = r.Close()
	s.finish(nil)
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module completion\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, stripped := range []bool{false, true} {
		bin := filepath.Join(dir, "prog")
		args := []string{"build", "-o", bin}
		if stripped {
			args = append(args, "-ldflags=-s -w")
		}
		cmd := exec.Command("go", append(args, ".")...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		b, err := Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		check := func(name string, p *Probe, wantErr *bpf.Capture, wantSave []uint8) {
			t.Helper()
			if !p.IsCompletion || p.Role.Kind != RoleNone {
				t.Errorf("stripped=%v %s: completion %v role %+v, want a completion that publishes nothing", stripped, name, p.IsCompletion, p.Role)
			}
			if p.ReceiverCapture != 0 || len(p.Recipe.Entry) != 1 || !reflect.DeepEqual(p.Recipe.Entry[0], bpf.Capture{Kind: bpf.CapReg, Reg: 0}) {
				t.Errorf("stripped=%v %s: receiver %d in %+v, want RAX first", stripped, name, p.ReceiverCapture, p.Recipe.Entry)
			}
			if wantErr == nil {
				if p.ErrorCapture != -1 {
					t.Errorf("stripped=%v %s: error capture %d, want none", stripped, name, p.ErrorCapture)
				}
			} else if p.ErrorCapture != 0 || len(p.Recipe.Return) != 1 || !reflect.DeepEqual(p.Recipe.Return[0], *wantErr) {
				t.Errorf("stripped=%v %s: error %d in %+v, want %+v", stripped, name, p.ErrorCapture, p.Recipe.Return, *wantErr)
			}
			if string(p.Recipe.Save) != string(wantSave) {
				t.Errorf("stripped=%v %s: saved registers %v, want %v", stripped, name, p.Recipe.Save, wantSave)
			}
		}
		result := &bpf.Capture{Kind: bpf.CapError, Reg: 0, Reg2: 1, MaxLen: bpf.StringSlotSize}
		p, err := CompileCompletion(b, "main.(*R).Close", Runtime{}, &ErrorFrom{Regs: [2]uint8{0, 1}})
		if err != nil {
			t.Fatal(err)
		}
		check("Close from results", p, result, nil)
		p, err = CompileCompletion(b, "main.(*S).finish", Runtime{}, &ErrorFrom{Regs: [2]uint8{1, 2}, Arg: true})
		if err != nil {
			t.Fatal(err)
		}
		check("finish from its argument", p, &bpf.Capture{Kind: bpf.CapError, Reg: bpf.BaseSaved, Reg2: bpf.BaseSaved + 1, MaxLen: bpf.StringSlotSize}, []uint8{1, 2})
		// A spec's completion: DWARF says where the error is; without it
		// none is read.
		p, err = CompileCompletion(b, "main.(*R).Close", Runtime{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if stripped {
			check("Close by a spec, stripped", p, nil, nil)
		} else {
			check("Close by a spec", p, result, nil)
		}
		if _, err := CompileCompletion(b, "main.(*R).Open", Runtime{}, &ErrorFrom{}); err == nil {
			t.Errorf("stripped=%v: a missing function compiled", stripped)
		}
	}
}
