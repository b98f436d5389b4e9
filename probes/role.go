package probes

// RoleKind says what the span side makes of a probe's calls.
type RoleKind uint8

const (
	// RoleNone publishes nothing: completion probes (they only settle the
	// calls whose handle they receive) and probes that send no events.
	RoleNone RoleKind = iota
	// RoleSpan opens a span of its own, shaped by the YAML spec (name,
	// kind, the captured attributes as they are).
	RoleSpan
	// RoleSemconv opens a built-in set's span: the span side's shaper
	// named by Role.Name gives its name, kind and semantic-convention
	// attributes.
	RoleSemconv
	// RoleEnrich opens no span: the call's captures go on the span active
	// where it was called, as they are (Role.Name empty, a span: false
	// spec) or through the built-in enricher Role.Name names.
	RoleEnrich
	// RoleJoin opens no span: the call is one of the program's own
	// OpenTelemetry SDK, and the trace of the span active around it joins
	// the trace of the span the program started (Role.Name names the
	// reader of that span).
	RoleJoin
)

// Role is the one value a probe carries for the span side (binder and
// binder/semconv): the kernel side decides what is captured, the role says
// which span code turns the captures into spans. It is plain data, so that
// the kernel side imports no span code.
type Role struct {
	Kind RoleKind
	// Name names a built-in's span code: its shaper, enricher or joiner
	// ("http.server", "grpc.status", "otel.start"); "" for custom probes.
	// A RoleNone probe may name one too, for the meaning of its error (a
	// gRPC stream's completion).
	Name string
	// Arg is plain data only the kernel side knows and the span code
	// needs: the type name of HTTP/2's response writer in this binary for
	// http.server, the db.query.text mode for db.query.
	Arg string
}

// specRole is the role of a probe compiled from a spec: a span of its own,
// or, for span: false, its captures on the enclosing span.
func specRole(s Spec) Role {
	if s.OpensSpan() {
		return Role{Kind: RoleSpan}
	}
	return Role{Kind: RoleEnrich}
}
