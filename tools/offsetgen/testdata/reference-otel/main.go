// Command reference links in the OpenTelemetry SDK's tracer the way the
// otel built-in probe reads it, so that offsetgen can read its struct
// layouts from DWARF. The offsets tool writes its go.mod for each SDK
// release; it is built, never run.
package main

import (
	"context"
	"os"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func main() {
	if len(os.Args) < 42 { // never: only keeps the tracer linked in
		return
	}
	tp := sdktrace.NewTracerProvider()
	_, span := tp.Tracer("reference").Start(context.Background(), os.Args[1])
	span.End()
}
