package main

import (
	"errors"
	"fmt"
	"os"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tcagent/tcagent/exporter"
)

// traceSampler resolves the sampler from --sampler and --sampler-arg, else
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, and refuses a bad value
// from either the same way, naming where it came from. The agent always
// passes the SDK its own sampler: left to read the variables itself, the
// SDK logs a bad one and samples everything.
func (f *traceFlags) traceSampler() (sdktrace.Sampler, float64, error) {
	name, nameFrom := f.sampler, "--sampler"
	if name == "" {
		name, nameFrom = os.Getenv("OTEL_TRACES_SAMPLER"), "OTEL_TRACES_SAMPLER"
	}
	if name == "" {
		name = "parentbased_always_on"
	}
	arg, argFrom := f.samplerArg, "--sampler-arg"
	if arg == "" {
		arg, argFrom = os.Getenv("OTEL_TRACES_SAMPLER_ARG"), "OTEL_TRACES_SAMPLER_ARG"
	}
	s, ratio, err := exporter.Sampler(name, arg)
	switch {
	case errors.Is(err, exporter.ErrUnknownSampler):
		return nil, 0, fmt.Errorf("%s %q: %w", nameFrom, name, exporter.ErrUnknownSampler)
	case errors.Is(err, exporter.ErrSamplerRatio):
		return nil, 0, fmt.Errorf("%s %q (for %s): %w", argFrom, arg, name, exporter.ErrSamplerRatio)
	case err != nil:
		return nil, 0, err
	}
	return s, ratio, nil
}
