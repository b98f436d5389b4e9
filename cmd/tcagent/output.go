package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// spanOutput is where the jsonl and stdout exporters write: --output FILE,
// else tcagent's stdout.
type spanOutput struct {
	w    io.Writer
	file *os.File // nil on stdout
	// onStdout: the spans are on tcagent's stdout, so `run` sends the
	// program's stdout to stderr, that the span stream holds spans only.
	onStdout bool
}

// openOutput opens --output for an exporter of kind (the default exporter
// already resolved).
func (f *traceFlags) openOutput(kind string, stdout io.Writer) (*spanOutput, error) {
	switch kind {
	case "jsonl", "stdout":
	case "otlp":
		if f.output != "" {
			return nil, errors.New("--output is for the jsonl and stdout exporters: otlp sends spans to the Collector")
		}
		return &spanOutput{}, nil
	default:
		return &spanOutput{}, nil // setup refuses the exporter
	}
	if f.output == "" {
		return &spanOutput{w: stdout, onStdout: true}, nil
	}
	file, err := os.OpenFile(f.output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--output: %w", err)
	}
	// --output /dev/stdout, or a file stdout is redirected to, is stdout.
	out := &spanOutput{w: file, file: file}
	if so, ok := stdout.(*os.File); ok {
		fi, err1 := file.Stat()
		si, err2 := so.Stat()
		out.onStdout = err1 == nil && err2 == nil && os.SameFile(fi, si)
	}
	return out, nil
}

// close closes the file, once the exporter has flushed into it; again, it
// does nothing.
func (o *spanOutput) close() error {
	if o == nil || o.file == nil {
		return nil
	}
	file := o.file
	o.file = nil
	if err := file.Close(); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	return nil
}
