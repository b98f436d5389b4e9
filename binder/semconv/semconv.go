// Package semconv is the span side of the built-in probe sets: for each set
// (http, sql, redis, mongo, grpc, otel, routes, kafka) what its captures mean as OpenTelemetry
// spans — span names, kinds, semantic-convention attributes, remote
// parents, what enriches an enclosing span, which program spans a trace
// joins, and what a returned error means. The kernel side of each set
// (offsets, recipes, the capture keys read here) is in probes/builtin,
// one file per set on each side: probes/builtin/http.go ↔ semconv/http.go.
//
// A Side serves one binary: some meanings depend on it (the runtime type
// names the captures point at, the driver modules it links).
package semconv

import (
	"net"
	"strconv"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/binder"
	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// Side is the built-in sets' span code for one binary; it implements
// binder.SpanSide.
type Side struct {
	// typeName names a runtime type the target's captures point at.
	typeName func(uint64) string
	// dbSystem is db.system.name by the driver modules the binary links,
	// for statements whose driver type says nothing.
	dbSystem string
	// routed is set when the binary has a router the routes set reads:
	// its server spans may carry a router's route.
	routed bool
	// invalid counts trace context values ignored as malformed where no
	// remote parent is asked for (a received message's, made a link).
	invalid *atomic.Uint64
	// handoffs tells sarama's repeated handoffs of a message.
	handoffs *handoffs
}

var _ binder.SpanSide = (*Side)(nil)

// Facts are what the span side's meanings depend on in one binary beyond
// its type names. They are read once, while the binary is analysed: its
// function table is gone once it is compacted (probes.Binary.Compact), and
// every process of it shares them.
type Facts struct {
	// DBSystem is db.system.name by the driver modules the binary links.
	DBSystem string
	// Routed is set when the binary has a router the routes set reads.
	Routed bool
}

// FactsOf reads b's Facts.
func FactsOf(b *probes.Binary) Facts {
	return Facts{DBSystem: dbSystem(b), Routed: builtin.UsesRouter(b)}
}

// New returns the span side of the built-in probes in one process of a
// binary with facts f, whose type addresses typeName names (the process's
// load bias taken off); invalid counts the trace context
// values its spans ignore as malformed outside RemoteParent (which reports
// its own).
func New(f Facts, typeName func(addr uint64) string, invalid *atomic.Uint64) *Side {
	return &Side{typeName: typeName, dbSystem: f.DBSystem, routed: f.Routed, invalid: invalid, handoffs: newHandoffs()}
}

// Shaper implements binder.SpanSide.
func (s *Side) Shaper(r probes.Role) (binder.Shaper, bool) {
	switch r.Name {
	case builtin.RoleHTTPServer:
		return &serverShape{typeName: s.typeName, h2Type: r.Arg, routed: s.routed}, true
	case builtin.RoleHTTPClient:
		return clientShape{}, true
	case builtin.RoleGRPCServer:
		return &grpcServerShape{typeName: s.typeName}, true
	case builtin.RoleGRPCClient:
		return grpcClientShape{}, true
	case builtin.RoleGRPCStream:
		return grpcClientShape{stream: true}, true
	case builtin.RoleSQLQuery:
		return &sqlShape{system: s.dbSystem, text: r.Arg, typeName: s.typeName}, true
	case builtin.RoleSQLBegin, builtin.RoleSQLCommit, builtin.RoleSQLRollback:
		op := strings.ToUpper(strings.TrimPrefix(r.Name, "db."))
		return &sqlShape{system: s.dbSystem, op: op, typeName: s.typeName, rollback: r.Name == builtin.RoleSQLRollback}, true
	case builtin.RoleRedis:
		return redisShape{}, true
	case builtin.RoleRedisPipeline:
		return redisShape{fixed: "PIPELINE"}, true
	case builtin.RoleRedisMulti:
		return redisShape{fixed: "MULTI"}, true
	case builtin.RoleKafkaSend:
		return kafkaShape{op: "send", typeName: s.typeName, invalid: s.invalid}, true
	case builtin.RoleKafkaReceive:
		return kafkaShape{op: "receive", typeName: s.typeName, invalid: s.invalid}, true
	case builtin.RoleMongo:
		return mongoShape{command: r.Arg, typeName: s.typeName}, true
	case builtin.RoleKafkaHandoff:
		return kafkaShape{op: "receive", typeName: s.typeName, invalid: s.invalid, handoffs: s.handoffs}, true
	}
	return nil, false
}

// Enricher implements binder.SpanSide.
func (s *Side) Enricher(r probes.Role) (func(trace.Span, *channel.Payload), bool) {
	switch r.Name {
	case builtin.RoleGRPCStatus:
		return enrichGRPCServer, true
	case builtin.RoleHTTPRoute:
		return s.enrichRoute(r.Arg), true
	case builtin.RoleMongoCommand:
		return mongoEnricher{text: r.Arg}.enrich, true
	case builtin.RoleMongoServer:
		return enrichMongoServer, true
	}
	return nil, false
}

// Joiner implements binder.SpanSide.
func (s *Side) Joiner(r probes.Role) (func(*channel.Payload) (trace.SpanContext, bool), bool) {
	if r.Name == builtin.RoleOTelStart {
		return (&otelSpan{typeName: s.typeName}).context, true
	}
	return nil, false
}

// ErrorOf says what a returned error means for a probe of role r: nil
// when the error reports a result rather than a failure (go-redis's
// redis.Nil for a missing key), else the error to record, which may be
// richer than e, made with the return's other captures, ret (a gRPC status
// and its code). It returns nil for the roles whose errors mean what they
// say.
func ErrorOf(r probes.Role) func(e *channel.Error, ret []attribute.KeyValue) error {
	switch r.Name {
	case builtin.RoleGRPCClient, builtin.RoleGRPCStream, builtin.RoleGRPCFinish:
		return grpcError
	case builtin.RoleRedis, builtin.RoleRedisPipeline, builtin.RoleRedisMulti:
		return redisError
	case builtin.RoleKafkaSend, builtin.RoleKafkaReceive:
		return kafkaError
	case builtin.RoleMongo:
		return mongoErrorOf
	}
	return nil
}

// raw reads the internal attributes of a built-in probe.
type raw []attribute.KeyValue

func (r raw) str(key string) (string, bool) {
	for _, a := range r {
		if string(a.Key) == key {
			return a.Value.AsString(), true
		}
	}
	return "", false
}

// unreadable says whether the capture key could not be read or trusted
// (probes.Attributes marked it key.unreadable), and gives the attribute that
// says so under the exported name as: as.unreadable, with the reason.
func (r raw) unreadable(key, as string) (attribute.KeyValue, bool) {
	// Matched without building key's marked name: most captures are
	// readable, and a concatenation per lookup cost an allocation.
	for _, a := range r {
		k := string(a.Key)
		if len(k) == len(key)+len(probes.UnreadableSuffix) && strings.HasPrefix(k, key) && strings.HasSuffix(k, probes.UnreadableSuffix) {
			return attribute.String(as+probes.UnreadableSuffix, a.Value.AsString()), true
		}
	}
	return attribute.KeyValue{}, false
}

func (r raw) int(key string) (int64, bool) {
	for _, a := range r {
		if string(a.Key) == key {
			return a.Value.AsInt64(), true
		}
	}
	return 0, false
}

func hostPort(hostport string, defaultPort int) (string, int) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return strings.Trim(hostport, "[]"), defaultPort
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return host, defaultPort
	}
	return host, p
}

// errorType sets error.type from a call's error as the program returned
// it (its Go type), when the call failed.
func errorType(span trace.Span, p *channel.Payload) {
	if e, ok := p.Err().(interface{ TypeName() string }); ok && p.HasError() {
		span.SetAttributes(attribute.String("error.type", e.TypeName()))
	}
}
