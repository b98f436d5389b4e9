package exporter

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// OTLPOptions override the standard OTEL_EXPORTER_OTLP_* variables, which
// the OpenTelemetry exporters read themselves (endpoint, headers, timeout,
// compression, certificates, and their _TRACES_ forms).
type OTLPOptions struct {
	// Endpoint is a base URL, e.g. http://collector:4318, as
	// OTEL_EXPORTER_OTLP_ENDPOINT is: over HTTP, traces go to its
	// /v1/traces. It overrides the endpoint variables.
	Endpoint string
	Protocol string // grpc or http/protobuf; overrides OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL
}

// Protocol resolves the OTLP protocol: the option, else the variables, else
// http/protobuf (the specification's default).
func (o OTLPOptions) protocol() string {
	for _, p := range []string{o.Protocol, os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")} {
		if p != "" {
			return p
		}
	}
	return "http/protobuf"
}

// NewOTLP returns the OTLP trace exporter for o.
func NewOTLP(ctx context.Context, o OTLPOptions) (sdktrace.SpanExporter, error) {
	switch p := o.protocol(); p {
	case "http/protobuf":
		var opts []otlptracehttp.Option
		if o.Endpoint != "" {
			u, err := url.Parse(o.Endpoint)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("OTLP endpoint %q: want a URL such as http://localhost:4318", o.Endpoint)
			}
			u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
			opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
		}
		return otlptracehttp.New(ctx, opts...)
	case "grpc":
		var opts []otlptracegrpc.Option
		if o.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(o.Endpoint))
		}
		return otlptracegrpc.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("OTLP protocol %q: want grpc or http/protobuf", p)
	}
}

// ErrUnknownSampler and ErrSamplerRatio are why Sampler refuses a name or
// an argument; the caller says where the value came from.
var (
	ErrUnknownSampler = errors.New("want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio")
	ErrSamplerRatio   = errors.New("want a ratio from 0 to 1")
)

// Sampler returns the sampler named as OTEL_TRACES_SAMPLER names them, with
// arg as OTEL_TRACES_SAMPLER_ARG (the ratio of the ratio samplers, default
// 1; the others ignore it, as the SDK does), and the share of new traces it
// samples at their root, by the trace id (TraceIDRatioBased's rule): what
// --propagate's kernel-made traces must agree with.
func Sampler(name, arg string) (sdktrace.Sampler, float64, error) {
	ratio := 1.0
	if arg != "" && (name == "traceidratio" || name == "parentbased_traceidratio") {
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || !(r >= 0 && r <= 1) {
			return nil, 0, fmt.Errorf("sampler argument %q: %w", arg, ErrSamplerRatio)
		}
		ratio = r
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), 1, nil
	case "always_off":
		return sdktrace.NeverSample(), 0, nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), ratio, nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), 1, nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), 0, nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), ratio, nil
	}
	return nil, 0, fmt.Errorf("sampler %q: %w", name, ErrUnknownSampler)
}
