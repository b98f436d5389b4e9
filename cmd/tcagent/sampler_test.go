package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestSamplerRefusals: a bad sampler or ratio is refused the same way
// whether a flag or the OTEL_TRACES_SAMPLER variables gave it, naming the
// source; a good one from either is taken.
func TestSamplerRefusals(t *testing.T) {
	for _, c := range []struct {
		env, flags []string // env as NAME=VALUE
		want       string   // the error; "" for none
		ratio      float64
	}{
		{nil, nil, "", 1},
		{[]string{"OTEL_TRACES_SAMPLER=bogus"}, nil, `OTEL_TRACES_SAMPLER "bogus": want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio`, 0},
		{nil, []string{"--sampler", "bogus"}, `--sampler "bogus": want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio`, 0},
		{[]string{"OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=half"}, nil, `OTEL_TRACES_SAMPLER_ARG "half" (for traceidratio): want a ratio from 0 to 1`, 0},
		{[]string{"OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=1.5"}, nil, `OTEL_TRACES_SAMPLER_ARG "1.5" (for parentbased_traceidratio): want a ratio from 0 to 1`, 0},
		{[]string{"OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=NaN"}, nil, `OTEL_TRACES_SAMPLER_ARG "NaN" (for traceidratio): want a ratio from 0 to 1`, 0},
		{nil, []string{"--sampler", "traceidratio", "--sampler-arg", "-1"}, `--sampler-arg "-1" (for traceidratio): want a ratio from 0 to 1`, 0},
		{[]string{"OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.25"}, nil, "", 0.25},
		{[]string{"OTEL_TRACES_SAMPLER=traceidratio"}, nil, "", 1},
		{[]string{"OTEL_TRACES_SAMPLER=always_off"}, nil, "", 0},
		// The flag wins, over a bad variable too; the non-ratio samplers
		// ignore the argument, as the SDK does.
		{[]string{"OTEL_TRACES_SAMPLER=bogus"}, []string{"--sampler", "always_on"}, "", 1},
		{[]string{"OTEL_TRACES_SAMPLER_ARG=half"}, nil, "", 1},
		{[]string{"OTEL_TRACES_SAMPLER_ARG=half"}, []string{"--sampler", "traceidratio", "--sampler-arg", "0.5"}, "", 0.5},
		{[]string{"OTEL_TRACES_SAMPLER_ARG=0.5"}, []string{"--sampler", "traceidratio"}, "", 0.5},
	} {
		t.Setenv("OTEL_TRACES_SAMPLER", "")
		t.Setenv("OTEL_TRACES_SAMPLER_ARG", "")
		for _, kv := range c.env {
			k, v, _ := strings.Cut(kv, "=")
			t.Setenv(k, v)
		}
		f, err := parseTraceFlags(c.flags...)
		if err != nil {
			t.Fatal(err)
		}
		_, ratio, err := f.traceSampler()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v %v: %v", c.env, c.flags, err)
		case c.want == "" && ratio != c.ratio:
			t.Errorf("%v %v: root ratio %v, want %v", c.env, c.flags, ratio, c.ratio)
		case c.want != "" && (err == nil || err.Error() != c.want):
			t.Errorf("%v %v: error %v, want %s", c.env, c.flags, err, c.want)
		}
	}
}

// parseTraceFlags parses args as the trace flags of attach, run and daemon.
func parseTraceFlags(args ...string) (*traceFlags, error) {
	var f traceFlags
	cmd := &cobra.Command{}
	f.register(cmd)
	return &f, cmd.ParseFlags(args)
}

// TestSamplerRefusedByTheCommand: attach refuses the variable before it
// looks for the process (which does not exist: were the sampler taken, the
// error would say so).
func TestSamplerRefusedByTheCommand(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "bogus")
	var stdout, stderr bytes.Buffer
	root := newRoot(&stdout, &stderr)
	root.SetArgs([]string{"attach", "--pid", "999999999", "--metrics-addr", ""})
	err := root.Execute()
	if err == nil || !strings.HasPrefix(err.Error(), `OTEL_TRACES_SAMPLER "bogus": want `) || strings.Contains(err.Error(), "\n") {
		t.Errorf("attach with OTEL_TRACES_SAMPLER=bogus: %v", err)
	}
	if stdout.Len() != 0 || stderr.Len() != 0 {
		t.Errorf("output besides the error: %q %q", stdout.String(), stderr.String())
	}
}
