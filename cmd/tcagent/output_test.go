package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenOutput: where spans go for each exporter and --output.
func TestOpenOutput(t *testing.T) {
	var stdout bytes.Buffer
	dir := t.TempDir()

	f := &traceFlags{}
	out, err := f.openOutput("jsonl", &stdout)
	if err != nil || out.w != &stdout || !out.onStdout {
		t.Errorf("jsonl without --output: %+v, %v; want stdout", out, err)
	}
	if out, err := f.openOutput("otlp", &stdout); err != nil || out.w != nil || out.onStdout {
		t.Errorf("otlp: %+v, %v; want no writer", out, err)
	}

	f.output = filepath.Join(dir, "spans.jsonl")
	if err := os.WriteFile(f.output, []byte("old spans\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = f.openOutput("stdout", &stdout)
	if err != nil || out.onStdout || out.file == nil {
		t.Fatalf("--output FILE: %+v, %v", out, err)
	}
	if _, err := out.w.Write([]byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	if err := out.close(); err != nil {
		t.Fatal(err)
	}
	if err := out.close(); err != nil {
		t.Errorf("a second close: %v", err)
	}
	if b, _ := os.ReadFile(f.output); string(b) != "{}\n" {
		t.Errorf("--output FILE holds %q, want the new spans only", b)
	}

	if _, err := f.openOutput("otlp", &stdout); err == nil || !strings.Contains(err.Error(), "--output is for the jsonl and stdout exporters") {
		t.Errorf("--output with otlp: %v", err)
	}
	f.output = filepath.Join(dir, "no", "such", "dir")
	if _, err := f.openOutput("jsonl", &stdout); err == nil || !strings.HasPrefix(err.Error(), "--output: open ") {
		t.Errorf("--output in a missing directory: %v", err)
	}

	// --output naming the file tcagent's stdout is (/dev/stdout, or where
	// the shell sent it) is stdout.
	so, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer so.Close()
	f.output = so.Name()
	out, err = f.openOutput("jsonl", so)
	if err != nil || !out.onStdout {
		t.Errorf("--output naming stdout's file: %+v, %v; want it seen as stdout", out, err)
	}
	out.close()
	f.output = filepath.Join(dir, "other")
	if out, err = f.openOutput("jsonl", so); err != nil || out.onStdout {
		t.Errorf("--output naming another file: %+v, %v; want it not stdout", out, err)
	}
	out.close()
}
