package channel

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// TestPayloadReset: a reset payload is a new call's, whatever the last call
// left in it; only its buffers stay. A field added to Payload and forgotten
// by Reset fails here.
func TestPayloadReset(t *testing.T) {
	p := &Payload{Name: "n", Goroutine: 7, Time: time.Now(), StartTime: time.Now(),
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, EndReason: "lost",
		Caller: trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{2}, SpanID: trace.SpanID{2}})}
	p.SetAttributes([]attribute.KeyValue{attribute.Int("a", 1)})
	p.SetEndAttributes([]attribute.KeyValue{attribute.Int("b", 2)})
	p.SetResult(1)
	p.SetError(errors.New("x"))
	p.SetValue("k", "v")
	x := NewExec()
	s := NewStore("s")
	c := New("c")
	c.BindStore(s, func(*Payload, any) any { return "bound" })
	c.Start(x, p)
	p.Reset()
	buffers := map[string]bool{"slots": true, "slotBuf": true, "restore": true, "restoreBuf": true, "attrBuf": true}
	v := reflect.ValueOf(p).Elem()
	for i := range v.NumField() {
		if f := v.Type().Field(i); !buffers[f.Name] && !v.Field(i).IsZero() {
			t.Errorf("after Reset, %s = %v", f.Name, v.Field(i))
		}
	}
	if len(p.slots) != 0 || len(p.restore) != 0 || p.Value("k") != nil {
		t.Errorf("after Reset: %d values, %d stores to restore", len(p.slots), len(p.restore))
	}
	for _, sl := range p.slotBuf {
		if sl.key != nil || sl.value != nil {
			t.Errorf("after Reset, a subscriber's value is still held: %v", sl)
		}
	}
}
