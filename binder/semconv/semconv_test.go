package semconv

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// TestRolesResolve: every role the kernel side gives a built-in probe has
// its span code here, of the right kind, and what its span would be.
func TestRolesResolve(t *testing.T) {
	s := &Side{typeName: func(uint64) string { return "" }, dbSystem: "sqlite"}
	for _, c := range []struct {
		name  string
		attrs []attribute.KeyValue
		span  string
		kind  trace.SpanKind
	}{
		{builtin.RoleHTTPServer, []attribute.KeyValue{attribute.String(builtin.HTTPMethod, "GET")}, "GET", trace.SpanKindServer},
		{builtin.RoleHTTPClient, []attribute.KeyValue{attribute.String(builtin.HTTPMethod, "POST")}, "POST", trace.SpanKindClient},
		{builtin.RoleGRPCServer, []attribute.KeyValue{attribute.String(builtin.GRPCMethod, "/s.S/M")}, "s.S/M", trace.SpanKindServer},
		{builtin.RoleGRPCClient, []attribute.KeyValue{attribute.String(builtin.GRPCMethod, "/s.S/M")}, "s.S/M", trace.SpanKindClient},
		{builtin.RoleGRPCStream, []attribute.KeyValue{attribute.String(builtin.GRPCMethod, "/s.S/M"), attribute.Int64(builtin.GRPCServerStreams, 1)}, "s.S/M", trace.SpanKindClient},
		{builtin.RoleSQLQuery, []attribute.KeyValue{attribute.String(builtin.SQLQuery, "select 1")}, "SELECT", trace.SpanKindClient},
		{builtin.RoleSQLBegin, nil, "BEGIN", trace.SpanKindClient},
		{builtin.RoleSQLCommit, nil, "COMMIT", trace.SpanKindClient},
		{builtin.RoleSQLRollback, []attribute.KeyValue{attribute.Int64(builtin.SQLTxDone, 0)}, "ROLLBACK", trace.SpanKindClient},
		{builtin.RoleRedis, []attribute.KeyValue{attribute.String(builtin.RedisCommand, "get"), attribute.Int64(builtin.RedisArgc, 2)}, "GET", trace.SpanKindClient},
		{builtin.RoleRedisPipeline, nil, "PIPELINE", trace.SpanKindClient},
		{builtin.RoleRedisMulti, nil, "MULTI", trace.SpanKindClient},
		{builtin.RoleKafkaSend, []attribute.KeyValue{attribute.String(builtin.KafkaTopic, "orders")}, "send orders", trace.SpanKindProducer},
		{builtin.RoleKafkaReceive, []attribute.KeyValue{attribute.String(builtin.KafkaTopic, "orders")}, "receive orders", trace.SpanKindConsumer},
	} {
		shape, ok := s.Shaper(probes.Role{Kind: probes.RoleSemconv, Name: c.name, Arg: "sanitized"})
		if !ok {
			t.Errorf("%s: no shaper", c.name)
			continue
		}
		if name, kind, _ := shape.Start(&channel.Payload{Attributes: c.attrs}); name != c.span || kind != c.kind {
			t.Errorf("%s: span %q %v, want %q %v", c.name, name, kind, c.span, c.kind)
		}
	}
	if _, ok := s.Enricher(probes.Role{Kind: probes.RoleEnrich, Name: builtin.RoleGRPCStatus}); !ok {
		t.Error("grpc.status: no enricher")
	}
	if _, ok := s.Joiner(probes.Role{Kind: probes.RoleJoin, Name: builtin.RoleOTelStart}); !ok {
		t.Error("otel.start: no joiner")
	}
	for _, name := range []string{"", "http.inject", builtin.RoleGRPCStatus} {
		if _, ok := s.Shaper(probes.Role{Kind: probes.RoleSemconv, Name: name}); ok {
			t.Errorf("%q has a shaper", name)
		}
	}
}

// TestErrorOf: redis.Nil is no error for the redis roles; the gRPC client
// roles and a stream's completion make a status of theirs; other roles'
// errors mean what they say.
func TestErrorOf(t *testing.T) {
	nilErr := &channel.Error{Type: "proto.RedisError", Message: "redis: nil"}
	for _, name := range []string{builtin.RoleRedis, builtin.RoleRedisPipeline, builtin.RoleRedisMulti} {
		of := ErrorOf(probes.Role{Kind: probes.RoleSemconv, Name: name})
		if of == nil || of(nilErr, nil) != nil {
			t.Errorf("%s: redis.Nil is an error", name)
		}
		if e := (&channel.Error{Type: "proto.RedisError", Message: "ERR wrong"}); of == nil || of(e, nil) != e {
			t.Errorf("%s: a redis error is not kept", name)
		}
	}
	status := []attribute.KeyValue{attribute.Int64(builtin.GRPCCode, 5), attribute.String(builtin.GRPCMessage, "not found")}
	for _, name := range []string{builtin.RoleGRPCClient, builtin.RoleGRPCStream, builtin.RoleGRPCFinish} {
		of := ErrorOf(probes.Role{Name: name})
		if of == nil {
			t.Errorf("%s: no error meaning", name)
			continue
		}
		if g, ok := of(&channel.Error{Type: "*status.Error"}, status).(*grpcStatus); !ok || g.code != 5 || g.msg != "not found" {
			t.Errorf("%s: status %v", name, g)
		}
	}
	for _, r := range []probes.Role{{Kind: probes.RoleSpan}, {Kind: probes.RoleSemconv, Name: builtin.RoleHTTPClient}, {Kind: probes.RoleSemconv, Name: builtin.RoleSQLQuery}} {
		if ErrorOf(r) != nil {
			t.Errorf("%+v: its errors are given a meaning", r)
		}
	}
}
