package kerneltests

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/agent"
)

// kafkaBuild is a kafka fixture build, the kafka-go release it links and
// sarama's, "" when it has none.
type kafkaBuild struct {
	build
	kafkaGo, sarama string
}

// kafkaFixtures builds (once) the kafka fixture: kafka-go v0.4.42 (the
// oldest supported) alone with Go 1.22 (sarama needs Go 1.25), with sarama
// v1.50.1 (the oldest supported; go.s150.mod) with Go 1.25, and kafka-go
// v0.4.51 with sarama v1.61.1 (go.new.mod, the sarama tag) with Go 1.27;
// each normal and stripped, the newest a stripped PIE too.
func kafkaFixtures(t *testing.T) []kafkaBuild {
	links := []struct{ kafkaGo, sarama string }{{"v0.4.42", ""}, {"v0.4.42", "v1.50.1"}, {"v0.4.51", "v1.61.1"}}
	var out []kafkaBuild
	for _, f := range moduleFixtures(t, "kafka", []moduleRelease{
		{release: "go1.22", toolchain: "go1.22.12", modfile: "go.mod", label: "kafkagov0.4.42"},
		{release: "go1.25", toolchain: "go1.25.8", modfile: "go.s150.mod", label: "saramav1.50.1", args: []string{"-tags=sarama"}},
		{release: "go1.27", toolchain: "go1.27.3", modfile: "go.new.mod", label: "kafkagov0.4.51", args: []string{"-tags=sarama"}, pie: true},
	}) {
		out = append(out, kafkaBuild{f.build, links[f.of].kafkaGo, links[f.of].sarama})
	}
	return out
}

// startKafka starts a broker of its own for the test (franz-go's kfake, a
// Kafka-wire-protocol cluster: testdata/kafkabroker) and returns its
// address.
func startKafka(t *testing.T) string {
	t.Helper()
	buildsMu.Lock()
	path := filepath.Join(workDir, "kafkabroker")
	if _, done := builds[path]; !done {
		src, _ := filepath.Abs("testdata/kafkabroker")
		if err := goBuild(src, path, "local", "."); err != nil {
			buildsMu.Unlock()
			t.Fatal(err)
		}
		builds[path] = nil
	}
	buildsMu.Unlock()
	_, addr := startProcess(t, path, nil, nil)
	if addr == "" {
		t.Fatal("the kafka broker printed no address")
	}
	return strings.TrimSpace(addr)
}

// kafkaTraceID and kafkaSpanID are the creation context of the first
// message the fixture sends (its traceparent header).
const (
	kafkaTraceID = "0af7651916cd43dd8448eb211c80319c"
	kafkaSpanID  = "b7ad6b7169203331"
)

// TestBuiltinKafka sends with kafka-go's Writer (one message with a key and
// a traceparent, a batch of three, one through a Writer without a topic,
// one to a topic that does not exist) and reads the five back with its
// Reader (partition 0), and the first again as
// a member of a consumer group; with sarama's
// SyncProducer, one message with a string key, a batch of two and one to
// an unknown topic, then all eight through a sarama consumer group's claim,
// a slow consumer's: sarama offers it messages again and hands most off
// through its second select, which the spans must not show. Against a real Kafka-protocol broker, for each Go ×
// library release × stripped build.
func TestBuiltinKafka(t *testing.T) {
	for _, b := range kafkaFixtures(t) {
		t.Run(b.name, func(t *testing.T) {
			addr := startKafka(t)
			tg := startTarget(t, b.path, "TCAGENT_KAFKA_ADDR="+addr)
			ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"kafka"} })
			r := ss.s.Builtins()[0]
			if !r.Applied || r.Reason != "" {
				t.Fatalf("kafka set: applied %v, %q", r.Applied, r.Reason)
			}
			for f, src := range r.Offsets {
				want := "DWARF"
				if b.stripped {
					want = "table (github.com/segmentio/kafka-go@" + b.kafkaGo + ")"
					if strings.HasPrefix(f, "github.com/IBM/sarama.") {
						want = "table (github.com/IBM/sarama@" + b.sarama + ")"
					}
				}
				if src != want {
					t.Errorf("offset of %s from %q, want %q", f, src, want)
				}
			}
			tg.run(t, "kafkago")
			if b.sarama != "" {
				tg.run(t, "sarama")
				tg.run(t, "saramaconsume")
			}
			spans := ss.stop(t)
			var sends, receives []sdktrace.ReadOnlySpan
			for _, s := range spans {
				a := attrs(s)
				if a["messaging.system"] != "kafka" || a["messaging.operation.name"] != a["messaging.operation.type"] {
					t.Errorf("%s: attributes %v", s.Name(), a)
				}
				switch a["messaging.operation.name"] {
				case "send":
					if s.SpanKind() != trace.SpanKindProducer {
						t.Errorf("%s: kind %v", s.Name(), s.SpanKind())
					}
					sends = append(sends, s)
				case "receive":
					if s.SpanKind() != trace.SpanKindConsumer {
						t.Errorf("%s: kind %v", s.Name(), s.SpanKind())
					}
					receives = append(receives, s)
				default:
					t.Errorf("%s: operation %v", s.Name(), a["messaging.operation.name"])
				}
			}
			wantSends := []map[string]any{
				{"name": "send orders", "messaging.destination.name": "orders", "messaging.kafka.message.key": "order-1"},
				{"name": "send orders", "messaging.destination.name": "orders", "messaging.batch.message_count": int64(3)},
				{"name": "send orders", "messaging.destination.name": "orders"},
				{"name": "send nosuch", "messaging.destination.name": "nosuch", "error.type": "kafka.Error",
					"status": "kafka error 3: UNKNOWN_TOPIC_OR_PARTITION"},
			}
			if b.sarama != "" {
				wantSends = append(wantSends,
					map[string]any{"name": "send orders", "messaging.destination.name": "orders", "messaging.kafka.message.key": "order-2",
						"messaging.destination.partition.id": "0", "messaging.kafka.offset": int64(5)},
					map[string]any{"name": "send orders", "messaging.destination.name": "orders", "messaging.batch.message_count": int64(2)},
					// sarama joins the metadata refresh's error for the topic.
					map[string]any{"name": "send nosuch", "messaging.destination.name": "nosuch", "error.type": "*errors.joinError",
						"status": "nosuch: kafka server: Request was for a topic or partition that does not exist on this broker"})
			}
			checkKafkaSpans(t, "send", sends, wantSends)
			wantReceives := []map[string]any{
				{"name": "receive orders", "messaging.destination.name": "orders", "messaging.destination.partition.id": "0",
					"messaging.kafka.offset": int64(0), "messaging.kafka.message.key": "order-1", "link": kafkaTraceID + "/" + kafkaSpanID},
			}
			for off := int64(1); off < 5; off++ {
				wantReceives = append(wantReceives, map[string]any{"name": "receive orders", "messaging.destination.name": "orders",
					"messaging.destination.partition.id": "0", "messaging.kafka.offset": off})
			}
			wantReceives = append(wantReceives, map[string]any{"name": "receive orders", "messaging.destination.name": "orders",
				"messaging.consumer.group.name": "g1", "messaging.destination.partition.id": "0", "messaging.kafka.offset": int64(0),
				"messaging.kafka.message.key": "order-1", "link": kafkaTraceID + "/" + kafkaSpanID})
			if b.sarama != "" {
				// The eight messages handed off to sarama's group claim, once
				// each, though some were offered twice: a point in time, no
				// group name (not readable there).
				for off := int64(0); off < 8; off++ {
					w := map[string]any{"name": "receive orders", "messaging.destination.name": "orders",
						"messaging.destination.partition.id": "0", "messaging.kafka.offset": off}
					switch off {
					case 0:
						w["messaging.kafka.message.key"], w["link"] = "order-1", kafkaTraceID+"/"+kafkaSpanID
					case 5:
						w["messaging.kafka.message.key"] = "order-2"
					}
					wantReceives = append(wantReceives, w)
				}
			}
			checkKafkaSpans(t, "receive", receives, wantReceives)
		})
	}
}

// checkKafkaSpans compares spans, in the order they started, with want:
// each its name, its attributes that want names (and no other messaging
// attributes of a single message or a batch), its status ("status", the
// message of an error) and its one link ("link": trace/span).
func checkKafkaSpans(t *testing.T, what string, spans []sdktrace.ReadOnlySpan, want []map[string]any) {
	t.Helper()
	sortByStart(spans)
	if len(spans) != len(want) {
		t.Fatalf("%d %s spans, want %d: %v", len(spans), what, len(want), spanNames(spans))
	}
	for i, s := range spans {
		a, w := attrs(s), want[i]
		if s.Name() != w["name"] {
			t.Errorf("%s span %d: name %q, want %q", what, i, s.Name(), w["name"])
		}
		for _, k := range []string{"messaging.destination.name", "messaging.consumer.group.name", "messaging.kafka.message.key", "messaging.batch.message_count",
			"messaging.destination.partition.id", "messaging.kafka.offset", "error.type"} {
			if a[k] != w[k] {
				t.Errorf("%s span %d (%s): %s = %v, want %v", what, i, s.Name(), k, a[k], w[k])
			}
		}
		if st, failed := w["status"]; failed {
			if s.Status().Code != codes.Error || s.Status().Description != st {
				t.Errorf("%s span %d (%s): status %v, want error %q", what, i, s.Name(), s.Status(), st)
			}
		} else if s.Status().Code != codes.Unset {
			t.Errorf("%s span %d (%s): status %v", what, i, s.Name(), s.Status())
		}
		var links []string
		for _, l := range s.Links() {
			links = append(links, l.SpanContext.TraceID().String()+"/"+l.SpanContext.SpanID().String())
		}
		if want, ok := w["link"]; ok && (len(links) != 1 || links[0] != want) || !ok && len(links) != 0 {
			t.Errorf("%s span %d (%s): links %v, want %v", what, i, s.Name(), links, w["link"])
		}
		if s.Parent().IsValid() {
			t.Errorf("%s span %d (%s): parent %v, want none (nothing active around the call)", what, i, s.Name(), s.Parent())
		}
	}
}

func sortByStart(spans []sdktrace.ReadOnlySpan) {
	slices.SortStableFunc(spans, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
}

// TestBuiltinKafkaOff: with the kafka set left out, the same calls (kafka-go's,
// sarama's sends and its consumer group's) give no messaging span; the
// custom probes around them, their only spans, show the program was traced.
func TestBuiltinKafkaOff(t *testing.T) {
	var b kafkaBuild
	for _, f := range kafkaFixtures(t) {
		if f.sarama != "" && !f.stripped {
			b = f
		}
	}
	tg := startTarget(t, b.path, "TCAGENT_KAFKA_ADDR="+startKafka(t))
	ss := attachWith(t, tg.pid(), "probes:\n  - symbol: main.kafkaGo\n    name: produce-and-consume\n"+
		"  - symbol: main.saramaConsume\n    name: sarama-consume\n", nil)
	tg.run(t, "kafkago")
	tg.run(t, "sarama")
	tg.run(t, "saramaconsume")
	spans := ss.stop(t)
	sortByStart(spans)
	if names := spanNames(spans); len(spans) != 2 || spans[0].Name() != "produce-and-consume" || spans[1].Name() != "sarama-consume" {
		t.Errorf("spans without the kafka set: %v", names)
	}
}
