package semconv

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// mongoSpan opens a span as the binder does for a mongo operation of
// command ("" for RunCommand's), and returns it with the recorder that gets
// it when it ends.
func mongoSpan(t *testing.T, command string) (trace.Span, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	name, kind, attrs := mongoShape{command: command}.Start(&channel.Payload{})
	_, span := tp.Tracer("test").Start(context.Background(), name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	return span, rec
}

// sent is the enricher's payload for a command sent: its name, document and
// database as captured.
func sent(cmd string, doc []byte, db string) *channel.Payload {
	p := &channel.Payload{}
	p.SetAttributes([]attribute.KeyValue{attribute.String(builtin.MongoCommand, cmd), attribute.String(builtin.MongoDocument, string(doc)),
		attribute.String(builtin.MongoDatabase, db)})
	return p
}

func ended(t *testing.T, span trace.Span, rec *tracetest.SpanRecorder) (sdktrace.ReadOnlySpan, map[attribute.Key]string) {
	t.Helper()
	span.End()
	s := rec.Ended()[0]
	a := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		a[kv.Key] = kv.Value.Emit()
	}
	return s, a
}

func TestMongoEnrich(t *testing.T) {
	span, rec := mongoSpan(t, "find")
	if ro := span.(sdktrace.ReadOnlySpan); ro.Name() != "find" {
		t.Errorf("before the command is sent: %q", ro.Name())
	}
	mongoEnricher{text: "sanitized"}.enrich(span, sent("find", find(), "shop"))
	s, a := ended(t, span, rec)
	if s.Name() != "find orders" || s.SpanKind() != trace.SpanKindClient || a["db.system.name"] != "mongodb" || a["db.operation.name"] != "find" ||
		a["db.collection.name"] != "orders" || a["db.namespace"] != "shop" || !strings.HasPrefix(a["db.query.text"], `{"find": "orders", "filter": {"card": "?"`) {
		t.Errorf("%s %v %v", s.Name(), s.SpanKind(), a)
	}

	// RunCommand's span is named by the command it sends, and by the
	// database for a command of no collection; the handshake's hello sent
	// before it on a new connection is not it.
	span, rec = mongoSpan(t, "")
	mongoEnricher{text: "full"}.enrich(span, sent("hello", bdoc(bint32("hello", 1)), "admin"))
	mongoEnricher{text: "full"}.enrich(span, sent("ping", bdoc(bint32("ping", 1), bstr("$db", "shop")), "shop"))
	s, a = ended(t, span, rec)
	if _, ok := a["db.collection.name"]; s.Name() != "ping shop" || a["db.operation.name"] != "ping" || a["db.query.text"] != `{"ping": 1}` || ok {
		t.Errorf("%s %v", s.Name(), a)
	}

	// An operation's span takes its own command only; the text of an
	// authentication command is never exported; none means none.
	span, rec = mongoSpan(t, "insert")
	mongoEnricher{text: "full"}.enrich(span, sent("saslStart", bdoc(bint32("saslStart", 1), bstr("payload", "secret")), "admin"))
	s, a = ended(t, span, rec)
	if s.Name() != "insert" || a["db.namespace"] != "" || a["db.query.text"] != "" {
		t.Errorf("another command's attributes: %s %v", s.Name(), a)
	}
	span, rec = mongoSpan(t, "")
	mongoEnricher{text: "full"}.enrich(span, sent("createUser", bdoc(bstr("createUser", "alice"), bstr("pwd", "secret")), "admin"))
	if _, a = ended(t, span, rec); a["db.operation.name"] != "createUser" || a["db.query.text"] != "" {
		t.Errorf("createUser: %v", a)
	}
	span, rec = mongoSpan(t, "find")
	mongoEnricher{text: "none"}.enrich(span, sent("find", find(), "shop"))
	if _, a = ended(t, span, rec); a["db.query.text"] != "" || a["db.collection.name"] != "orders" {
		t.Errorf("none: %v", a)
	}

	// A span of another kind (the program's, an HTTP server's) under which
	// a driver sends a command of no operation (a cursor's getMore) is not
	// touched.
	rec = tracetest.NewSpanRecorder()
	_, other := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test").Start(context.Background(), "GET /orders")
	mongoEnricher{text: "sanitized"}.enrich(other, sent("getMore", bdoc(bint64("getMore", 7), bstr("collection", "orders")), "shop"))
	if s, a = ended(t, other, rec); s.Name() != "GET /orders" || len(a) != 0 {
		t.Errorf("another span enriched: %s %v", s.Name(), a)
	}
}

// TestMongoEnrichTruncated: a command document longer than the capture is
// rendered up to where it was cut, marked; the reader's "…" after the
// bytes is not taken for BSON.
func TestMongoEnrichTruncated(t *testing.T) {
	long := bdoc(bstr("find", "orders"), bsub("filter", bdoc(bstr("note", strings.Repeat("x", 300)))), bstr("$db", "shop"))
	span, rec := mongoSpan(t, "find")
	mongoEnricher{text: "sanitized"}.enrich(span, sent("find", append(long[:bpf.StringSlotSize:bpf.StringSlotSize], probes.TruncatedSuffix...), "shop"))
	if _, a := ended(t, span, rec); a["db.query.text"] != `{"find": "orders", "filter": {`+probes.TruncatedSuffix || a["db.collection.name"] != "orders" {
		t.Errorf("%v", a)
	}
	// Bytes that are not BSON are said to be unreadable, not rendered.
	span, rec = mongoSpan(t, "find")
	mongoEnricher{text: "sanitized"}.enrich(span, sent("find", []byte{5, 0, 0, 0, 7}, "shop"))
	if _, a := ended(t, span, rec); a["db.query.text"] != "" || a["db.query.text.unreadable"] == "" {
		t.Errorf("%v", a)
	}
}

func TestMongoErrorOf(t *testing.T) {
	ret := []attribute.KeyValue{
		attribute.Int64(builtin.MongoErrorCode, 26), attribute.String(builtin.MongoErrorMessage, "ns does not exist"),
		attribute.Int64(builtin.MongoWriteErrorCode, 11000), attribute.String(builtin.MongoWriteErrorMessage, "E11000 duplicate key error"),
	}
	for _, c := range []struct {
		typ, msg string
		code     int64
	}{
		{"driver.WriteCommandError", "E11000 duplicate key error", 11000},
		{"driver.Error", "ns does not exist", 26},
	} {
		err := mongoErrorOf(&channel.Error{Type: c.typ, Message: c.typ}, ret)
		e, ok := err.(*mongoError)
		if !ok || e.msg != c.msg || e.code != c.code || e.TypeName() != c.typ {
			t.Errorf("%s: %#v", c.typ, err)
		}
	}
	// Another type, or a detail that could not be read (a write concern
	// error has no write errors): the error as the program returned it.
	other := &channel.Error{Type: "topology.ServerSelectionError", Message: "topology.ServerSelectionError"}
	if err := mongoErrorOf(other, ret); err != other {
		t.Errorf("other: %v", err)
	}
	wce := &channel.Error{Type: "driver.WriteCommandError", Message: "driver.WriteCommandError"}
	if err := mongoErrorOf(wce, ret[:2]); err != wce {
		t.Errorf("no write error: %v", err)
	}

	// The span: the server's message, code and the error's type.
	span, rec := mongoSpan(t, "insert")
	p := &channel.Payload{}
	p.SetError(mongoErrorOf(&channel.Error{Type: "driver.WriteCommandError"}, ret))
	span.SetStatus(codes.Error, p.Err().Error()) // as the binder does
	mongoShape{command: "insert"}.End(span, p)
	s, a := ended(t, span, rec)
	if s.Status().Description != "E11000 duplicate key error" || a["db.response.status_code"] != "11000" || a["error.type"] != "driver.WriteCommandError" {
		t.Errorf("%v %v", s.Status(), a)
	}
}

// TestMongoServer: the connection's address on the operation's span, host
// and port (the default one when absent), a Unix socket's path alone; no
// other span's.
func TestMongoServer(t *testing.T) {
	for addr, want := range map[string][2]string{
		"127.0.0.1:40123": {"127.0.0.1", "40123"}, "db.example:27018": {"db.example", "27018"}, "[::1]:27017": {"::1", "27017"},
		"db.example": {"db.example", "27017"}, "/tmp/mongodb-27017.sock": {"/tmp/mongodb-27017.sock", ""},
	} {
		span, rec := mongoSpan(t, "find")
		p := &channel.Payload{}
		p.SetAttributes([]attribute.KeyValue{attribute.String(builtin.MongoServer, addr)})
		enrichMongoServer(span, p)
		if _, a := ended(t, span, rec); a["server.address"] != want[0] || a["server.port"] != want[1] {
			t.Errorf("%s: %q %q, want %v", addr, a["server.address"], a["server.port"], want)
		}
	}
	rec := tracetest.NewSpanRecorder()
	_, other := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test").Start(context.Background(), "GET /orders")
	p := &channel.Payload{}
	p.SetAttributes([]attribute.KeyValue{attribute.String(builtin.MongoServer, "127.0.0.1:1")})
	enrichMongoServer(other, p)
	if _, a := ended(t, other, rec); len(a) != 0 {
		t.Errorf("another span enriched: %v", a)
	}
}

// TestMongoCursor: a cursor's getMore is named by the collection its
// document names; a cursor call that sends nothing (a cursor the server
// closed, a getMore past the cursor's limit) opens no span; a getMore's
// error, left in the cursor, is its status.
func TestMongoCursor(t *testing.T) {
	span, rec := mongoSpan(t, "getMore")
	getMore := bdoc(bint64("getMore", 42), bstr("collection", "orders"), bint32("batchSize", 2), bstr("$db", "shop"))
	mongoEnricher{text: "sanitized"}.enrich(span, sent("getMore", getMore, "shop"))
	if s, a := ended(t, span, rec); s.Name() != "getMore orders" || a["db.collection.name"] != "orders" ||
		a["db.query.text"] != `{"getMore": "?", "collection": "?", "batchSize": "?"}` {
		t.Errorf("%s %v", s.Name(), a)
	}

	ints := func(kv ...any) *channel.Payload {
		p := &channel.Payload{}
		var attrs []attribute.KeyValue
		for i := 0; i < len(kv); i += 2 {
			attrs = append(attrs, attribute.Int64(kv[i].(string), int64(kv[i+1].(int))))
		}
		p.SetAttributes(attrs)
		return p
	}
	for _, c := range []struct {
		p    *channel.Payload
		open bool
	}{
		{ints(builtin.MongoCursorID, 0), false},
		{ints(builtin.MongoCursorID, 42), true},
		{ints(builtin.MongoCursorID, 42, builtin.MongoCursorLimit, 0, builtin.MongoCursorReturned, 10, builtin.MongoCursorBatch, 2), true},
		{ints(builtin.MongoCursorID, 42, builtin.MongoCursorLimit, 5, builtin.MongoCursorReturned, 4, builtin.MongoCursorBatch, 2), true},
		{ints(builtin.MongoCursorID, 42, builtin.MongoCursorLimit, 5, builtin.MongoCursorReturned, 5, builtin.MongoCursorBatch, 2), false},
		{&channel.Payload{}, true}, // an operation: no cursor read
	} {
		if name, _, _ := (mongoShape{command: "getMore"}).Start(c.p); (name != "") != c.open {
			t.Errorf("%v: span %q, want one: %v", c.p.Attributes, name, c.open)
		}
	}

	types := map[uint64]string{1: "driver.Error", 2: "*errors.errorString", 3: "mongo.CommandError"}
	shape := mongoShape{command: "getMore", typeName: func(a uint64) string { return types[a] }}
	for typ, want := range map[int64][3]string{1: {"cursor not found", "driver.Error", "43"}, 2: {"*errors.errorString", "*errors.errorString", ""},
		3: {"cursor not found", "mongo.CommandError", "43"}} {
		span, rec := mongoSpan(t, "getMore")
		p := &channel.Payload{}
		p.SetEndAttributes([]attribute.KeyValue{attribute.Int64(builtin.MongoErrorType, typ), attribute.Int64(builtin.MongoErrorCode, 43),
			attribute.String(builtin.MongoErrorMessage, "cursor not found")})
		shape.End(span, p)
		if s, a := ended(t, span, rec); s.Status().Code != codes.Error || s.Status().Description != want[0] || a["error.type"] != want[1] ||
			a["db.response.status_code"] != want[2] {
			t.Errorf("error type %d: %v %v", typ, s.Status(), a)
		}
	}
	// No error left: no status.
	span, rec = mongoSpan(t, "getMore")
	shape.End(span, &channel.Payload{})
	if s, _ := ended(t, span, rec); s.Status().Code != codes.Unset {
		t.Errorf("no error: %v", s.Status())
	}
}
