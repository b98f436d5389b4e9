package semconv

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
)

func attrMap(attrs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, a := range attrs {
		m[string(a.Key)] = a.Value.Emit()
	}
	return m
}

// TestUnreadableCaptures: a raw capture the decoder marked unreadable is
// exported as the semantic-convention key's .unreadable, never replaced by
// a default that looks real (an empty method is GET, an empty path "").
func TestUnreadableCaptures(t *testing.T) {
	bad := func(key string) attribute.KeyValue {
		return attribute.String(key+probes.UnreadableSuffix, probes.ReasonNotText)
	}
	srv := &serverShape{typeName: func(uint64) string { return "" }}
	name, _, attrs := srv.Start(&channel.Payload{Attributes: []attribute.KeyValue{bad("method"), bad("path")}})
	a := attrMap(attrs)
	if name != "HTTP" || a["http.request.method.unreadable"] != probes.ReasonNotText || a["url.path.unreadable"] != probes.ReasonNotText {
		t.Errorf("server span %q %v", name, a)
	}
	if _, ok := a["http.request.method"]; ok {
		t.Errorf("server span has a method: %v", a)
	}
	if _, ok := a["url.path"]; ok {
		t.Errorf("server span has a path: %v", a)
	}
	name, _, attrs = clientShape{}.Start(&channel.Payload{Attributes: []attribute.KeyValue{
		attribute.String("method", "GET"), attribute.String("scheme", "http"), bad("host"), attribute.String("path", "/x")}})
	a = attrMap(attrs)
	if name != "GET" || a["url.full.unreadable"] != probes.ReasonNotText || a["url.full"] != "" || a["server.address"] != "" {
		t.Errorf("client span %q %v", name, a)
	}
	sql := &sqlShape{system: "postgresql", text: "sanitized", typeName: func(uint64) string { return "" }}
	name, _, attrs = sql.Start(&channel.Payload{Attributes: []attribute.KeyValue{bad("query")}})
	a = attrMap(attrs)
	if name != "postgresql" || a["db.query.text.unreadable"] != probes.ReasonNotText || a["db.query.text"] != "" || a["db.operation.name"] != "" {
		t.Errorf("sql span %q %v", name, a)
	}
	// What reads fine is untouched.
	name, _, attrs = srv.Start(&channel.Payload{Attributes: []attribute.KeyValue{attribute.String("method", "POST"), attribute.String("path", "/p")}})
	if a := attrMap(attrs); name != "POST" || a["http.request.method"] != "POST" || a["url.path"] != "/p" {
		t.Errorf("server span %q %v", name, a)
	}
}
