package semconv

import (
	"context"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// kafkaTypes are the runtime types a test's key type words point at.
var kafkaTypes = map[uint64]string{1: "sarama.StringEncoder", 2: "sarama.ByteEncoder", 3: "*fmt.wrapError", 4: "*errors.errorString"}

// kafkaInvalid counts the malformed traceparents of the tests' spans.
var kafkaInvalid atomic.Uint64

func kafkaSpan(t *testing.T, op string, start, end []attribute.KeyValue, err error) sdktrace.ReadOnlySpan {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("t")
	shape := kafkaShape{op: op, typeName: func(a uint64) string { return kafkaTypes[a] }, invalid: &kafkaInvalid}
	p := &channel.Payload{Attributes: start}
	name, kind, attrs := shape.Start(p)
	_, s := tr.Start(context.Background(), name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	p.SetEndAttributes(end)
	if err != nil {
		p.SetError(err)
		s.SetStatus(codes.Error, err.Error())
	}
	shape.End(s, p)
	s.End()
	return rec.Ended()[0]
}

// TestKafkaSend: the client's topic before the message's; a single
// message's key (a sarama key only from a StringEncoder), a batch's size
// instead; a sarama send's partition and offset.
func TestKafkaSend(t *testing.T) {
	for _, c := range []struct {
		what       string
		start, end []attribute.KeyValue
		name       string
		want       map[string]string
	}{
		{"kafka-go, one message", []attribute.KeyValue{attribute.String(builtin.KafkaTopic, "orders"), attribute.String(builtin.KafkaMsgTopic, ""),
			attribute.String(builtin.KafkaKey, "k1"), attribute.Int64(builtin.KafkaCount, 1)}, nil,
			"send orders", map[string]string{"messaging.destination.name": "orders", "messaging.kafka.message.key": "k1", "messaging.batch.message_count": ""}},
		{"kafka-go, a batch, the messages' topic", []attribute.KeyValue{attribute.String(builtin.KafkaTopic, ""), attribute.String(builtin.KafkaMsgTopic, "audit"),
			attribute.String(builtin.KafkaKey, "k1"), attribute.Int64(builtin.KafkaCount, 3)}, nil,
			"send audit", map[string]string{"messaging.destination.name": "audit", "messaging.kafka.message.key": "", "messaging.batch.message_count": "3"}},
		{"kafka-go, a binary key", []attribute.KeyValue{attribute.String(builtin.KafkaTopic, "orders"), attribute.String(builtin.KafkaKey, "\x00\x01\xff"), attribute.Int64(builtin.KafkaCount, 1)}, nil,
			"send orders", map[string]string{"messaging.kafka.message.key": ""}},
		{"kafka-go, no key", []attribute.KeyValue{attribute.String(builtin.KafkaTopic, "orders"), attribute.String(builtin.KafkaKey, ""), attribute.Int64(builtin.KafkaCount, 1)}, nil,
			"send orders", map[string]string{"messaging.kafka.message.key": ""}},
		{"sarama, a string key", []attribute.KeyValue{attribute.String(builtin.KafkaMsgTopic, "orders"), attribute.Int64(builtin.KafkaKeyType, 1), attribute.String(builtin.KafkaKey, "k2")},
			[]attribute.KeyValue{attribute.Int64(builtin.KafkaPartition, 2), attribute.Int64(builtin.KafkaOffset, 40)},
			"send orders", map[string]string{"messaging.kafka.message.key": "k2", "messaging.destination.partition.id": "2", "messaging.kafka.offset": "40"}},
		{"sarama, a byte key", []attribute.KeyValue{attribute.String(builtin.KafkaMsgTopic, "orders"), attribute.Int64(builtin.KafkaKeyType, 2), attribute.String(builtin.KafkaKey, "\x01")}, nil,
			"send orders", map[string]string{"messaging.kafka.message.key": ""}},
		{"no topic read", []attribute.KeyValue{attribute.String(builtin.KafkaMsgTopic+probes.UnreadableSuffix, probes.ReasonNotText)}, nil,
			"send", map[string]string{"messaging.destination.name": "", "messaging.destination.name.unreadable": probes.ReasonNotText}},
	} {
		s := kafkaSpan(t, "send", c.start, c.end, nil)
		a := attrMap(s.Attributes())
		if s.Name() != c.name || s.SpanKind() != trace.SpanKindProducer || a["messaging.system"] != "kafka" || a["messaging.operation.name"] != "send" || a["messaging.operation.type"] != "send" {
			t.Errorf("%s: %q %v %v", c.what, s.Name(), s.SpanKind(), a)
		}
		for k, v := range c.want {
			if a[k] != v {
				t.Errorf("%s: %s = %q, want %q", c.what, k, a[k], v)
			}
		}
	}
}

// TestKafkaReceive: the message's partition, offset, key and creation
// context (a link), its topic when the reader has none of its own; a failed
// fetch has no message.
func TestKafkaReceive(t *testing.T) {
	msg := []attribute.KeyValue{attribute.String(builtin.KafkaMsgTopic, "audit"), attribute.Int64(builtin.KafkaPartition, 0),
		attribute.Int64(builtin.KafkaOffset, 7), attribute.String(builtin.KafkaKey, "k1"),
		attribute.String(builtin.KafkaTraceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}
	s := kafkaSpan(t, "receive", []attribute.KeyValue{attribute.String(builtin.KafkaTopic, ""), attribute.String(builtin.KafkaGroup, "g1")}, msg, nil)
	a := attrMap(s.Attributes())
	if s.Name() != "receive audit" || a["messaging.consumer.group.name"] != "g1" || s.SpanKind() != trace.SpanKindConsumer || a["messaging.destination.name"] != "audit" ||
		a["messaging.destination.partition.id"] != "0" || a["messaging.kafka.offset"] != "7" || a["messaging.kafka.message.key"] != "k1" {
		t.Errorf("%q %v %v", s.Name(), s.SpanKind(), a)
	}
	if l := s.Links(); len(l) != 1 || l[0].SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || l[0].SpanContext.SpanID().String() != "b7ad6b7169203331" {
		t.Errorf("links %v", l)
	}
	if s.Parent().IsValid() {
		t.Error("the creation context became the parent")
	}
	bad := append(msg[:4:4], attribute.String(builtin.KafkaTraceparent, "00-nothex"))
	before := kafkaInvalid.Load()
	if s := kafkaSpan(t, "receive", []attribute.KeyValue{attribute.String(builtin.KafkaTopic, "orders")}, bad, nil); len(s.Links()) != 0 || s.Name() != "receive orders" {
		t.Errorf("malformed traceparent: %q, links %v", s.Name(), s.Links())
	}
	if n := kafkaInvalid.Load() - before; n != 1 {
		t.Errorf("a malformed traceparent counted %d times, want once", n)
	}
	failed := kafkaSpan(t, "receive", []attribute.KeyValue{attribute.String(builtin.KafkaTopic, "orders")}, msg, &channel.Error{Type: "*errors.errorString", Message: "context deadline exceeded"})
	if a := attrMap(failed.Attributes()); a["messaging.kafka.offset"] != "" || len(failed.Links()) != 0 || a["error.type"] != "*errors.errorString" {
		t.Errorf("a failed fetch: %v %v", a, failed.Links())
	}
}

// TestKafkaError: kafka-go's kafka.Error and sarama's KError are protocol
// error codes, named; other errors are as read.
func TestKafkaError(t *testing.T) {
	code := func(v int64) []attribute.KeyValue {
		return []attribute.KeyValue{attribute.Int64(builtin.KafkaErrorCode, v)}
	}
	for _, c := range []struct {
		e    *channel.Error
		ret  []attribute.KeyValue
		want string
	}{
		{&channel.Error{Type: "kafka.Error", Message: "kafka.Error"}, code(3), "kafka error 3: UNKNOWN_TOPIC_OR_PARTITION"},
		{&channel.Error{Type: "sarama.KError", Message: "sarama.KError"}, code(0xffff), "kafka error -1: UNKNOWN_SERVER_ERROR"}, // an int16
		{&channel.Error{Type: "kafka.Error", Message: "kafka.Error"}, code(1000), "kafka error 1000"},
		{&channel.Error{Type: "kafka.Error", Message: "kafka.Error"}, nil, "kafka.Error"},
		{&channel.Error{Type: "*errors.errorString", Message: "EOF"}, code(3), "EOF"},
	} {
		err := ErrorOf(probes.Role{Name: builtin.RoleKafkaSend})(c.e, c.ret)
		if err == nil || err.Error() != c.want || err.(*channel.Error).Type != c.e.Type {
			t.Errorf("%s %v: %v, want %q", c.e.Type, c.ret, err, c.want)
		}
	}
}

// TestKafkaJoinedError: sarama's errors.Join of one *fmt.wrapError has that
// error's message; a join of several, or of another type, keeps the
// status the error got.
func TestKafkaJoinedError(t *testing.T) {
	join := &channel.Error{Type: "*errors.joinError", Message: "*errors.joinError"}
	for _, c := range []struct {
		n, typ int64
		want   string
	}{
		{1, 3, "nosuch: kafka server: no such topic"},
		{2, 3, "*errors.joinError"},
		{1, 4, "*errors.joinError"},
	} {
		end := []attribute.KeyValue{attribute.Int64(builtin.KafkaJoinLen, c.n), attribute.Int64(builtin.KafkaJoinType, c.typ),
			attribute.String(builtin.KafkaJoinMessage, "nosuch: kafka server: no such topic")}
		s := kafkaSpan(t, "send", []attribute.KeyValue{attribute.String(builtin.KafkaMsgTopic, "nosuch")}, end, join)
		if s.Status().Code != codes.Error || s.Status().Description != c.want || attrMap(s.Attributes())["error.type"] != "*errors.joinError" {
			t.Errorf("%d errors, type %s: status %v, attributes %v", c.n, kafkaTypes[uint64(c.typ)], s.Status(), attrMap(s.Attributes()))
		}
	}
}

// TestKafkaHandoff: a sarama handoff's span comes from its start's
// captures alone (topic, partition, offset, key, a link to the message's
// creation context); a message offered again on the same goroutine opens
// no span, the next one or another goroutine's does.
func TestKafkaHandoff(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("t")
	side := &Side{typeName: func(a uint64) string { return kafkaTypes[a] }, invalid: &kafkaInvalid, handoffs: newHandoffs()}
	shaper, ok := side.Shaper(probes.Role{Kind: probes.RoleSemconv, Name: builtin.RoleKafkaHandoff})
	if !ok {
		t.Fatal("no shaper for a handoff")
	}
	handoff := func(g uint64, addr, offset int64, key string) bool {
		p := &channel.Payload{Goroutine: g, Attributes: []attribute.KeyValue{attribute.String(builtin.KafkaMsgTopic, "orders"),
			attribute.Int64(builtin.KafkaPartition, 3), attribute.Int64(builtin.KafkaOffset, offset), attribute.Int64(builtin.KafkaMessage, addr),
			attribute.String(builtin.KafkaKey, key), attribute.String(builtin.KafkaTraceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}
		name, kind, attrs := shaper.Start(p)
		if name == "" {
			return false
		}
		_, s := tr.Start(context.Background(), name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
		shaper.End(s, p)
		s.End()
		return true
	}
	if !handoff(1, 0xc000100000, 7, "k1") {
		t.Fatal("the first handoff opened no span")
	}
	s := rec.Ended()[0]
	a := attrMap(s.Attributes())
	if s.Name() != "receive orders" || s.SpanKind() != trace.SpanKindConsumer || a["messaging.destination.name"] != "orders" || a["messaging.operation.name"] != "receive" ||
		a["messaging.destination.partition.id"] != "3" || a["messaging.kafka.offset"] != "7" || a["messaging.kafka.message.key"] != "k1" || a["messaging.consumer.group.name"] != "" {
		t.Errorf("%q %v %v", s.Name(), s.SpanKind(), a)
	}
	if l := s.Links(); len(l) != 1 || l[0].SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || s.Parent().IsValid() {
		t.Errorf("links %v, parent %v", l, s.Parent())
	}
	for _, c := range []struct {
		what   string
		g      uint64
		addr   int64
		offset int64
		span   bool
	}{
		{"offered again", 1, 0xc000100000, 7, false},
		{"offered a third time", 1, 0xc000100000, 7, false},
		{"the next message", 1, 0xc000100100, 8, true},
		{"a reused address, another offset", 1, 0xc000100100, 9, true},
		{"another goroutine's", 2, 0xc000100100, 9, true},
	} {
		if got := handoff(c.g, c.addr, c.offset, "\x00"); got != c.span {
			t.Errorf("%s: span %v, want %v", c.what, got, c.span)
		}
	}
	if a := attrMap(rec.Ended()[1].Attributes()); a["messaging.kafka.message.key"] != "" {
		t.Errorf("a binary key kept: %v", a)
	}
}

// TestHandoffsBounded: past maxHandoffs goroutines, one is forgotten for
// each new one.
func TestHandoffsBounded(t *testing.T) {
	h := newHandoffs()
	msg := raw{attribute.Int64(builtin.KafkaMessage, 1), attribute.Int64(builtin.KafkaOffset, 1)}
	for g := uint64(0); g < 2*maxHandoffs; g++ {
		if h.again(g, msg) {
			t.Fatalf("goroutine %d: a first handoff taken as a repeat", g)
		}
	}
	if len(h.last) != maxHandoffs {
		t.Errorf("%d goroutines remembered, want %d", len(h.last), maxHandoffs)
	}
	if h.again(3*maxHandoffs, raw{attribute.Int64(builtin.KafkaOffset, 1)}) {
		t.Error("a handoff without the message's address taken as a repeat")
	}
}
