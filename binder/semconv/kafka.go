package semconv

import (
	"strconv"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes/builtin"
)

// kafkaShape shapes a producer's send (kafka-go's WriteMessages, sarama's
// SendMessage and SendMessages) or a consumer's receive (kafka-go's
// FetchMessage, under ReadMessage too) as the messaging conventions say:
// "{operation} {destination}", kind producer or consumer.
//
// A received message's creation context (its traceparent header) is known
// only when the fetch returns, after its span has started: it is added as a
// link, as the conventions recommend for receive spans, not made the
// parent.
//
// A sarama handoff (builtin.RoleKafkaHandoff) is a point in time whose
// captures all come at its start; handoffs, set for those, drops a
// message's handoff offered again.
type kafkaShape struct {
	op       string // "send" or "receive"
	typeName func(uint64) string
	invalid  *atomic.Uint64 // malformed traceparents, counted
	handoffs *handoffs
}

func (s kafkaShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	r := raw(p.Attributes)
	if s.handoffs != nil && s.handoffs.again(p.Goroutine, r) {
		return "", trace.SpanKindConsumer, nil
	}
	attrs := []attribute.KeyValue{attribute.String("messaging.system", "kafka"), attribute.String("messaging.operation.name", s.op),
		attribute.String("messaging.operation.type", s.op)}
	kind := trace.SpanKindProducer
	if s.op == "receive" {
		kind = trace.SpanKindConsumer
	}
	topic := kafkaTopic(r)
	name := s.op
	if topic != "" {
		name += " " + topic
		attrs = append(attrs, attribute.String("messaging.destination.name", topic))
	} else if a, ok := r.unreadable(builtin.KafkaMsgTopic, "messaging.destination.name"); ok {
		attrs = append(attrs, a)
	}
	if g, _ := r.str(builtin.KafkaGroup); g != "" {
		attrs = append(attrs, attribute.String("messaging.consumer.group.name", g))
	}
	// The batch size, or a single message's key: the conventions set
	// neither on the other kind of span.
	n, batch := r.int(builtin.KafkaCount)
	if batch && n != 1 {
		attrs = append(attrs, attribute.Int64("messaging.batch.message_count", n))
	} else if key, ok := s.key(r); ok {
		attrs = append(attrs, attribute.String("messaging.kafka.message.key", key))
	}
	return name, kind, attrs
}

// kafkaTopic is the client's own topic, else the message's.
func kafkaTopic(r raw) string {
	if t, _ := r.str(builtin.KafkaTopic); t != "" {
		return t
	}
	t, _ := r.str(builtin.KafkaMsgTopic)
	return t
}

// key is a message's key when it is text: kafka-go's []byte read as text,
// or a sarama StringEncoder.
func (s kafkaShape) key(r raw) (string, bool) {
	if t, ok := r.int(builtin.KafkaKeyType); ok && s.typeName(uint64(t)) != "sarama.StringEncoder" {
		return "", false
	}
	k, ok := r.str(builtin.KafkaKey)
	return k, ok && k != "" && isText(k)
}

// isText says whether a key read as bytes is text: valid UTF-8 without
// control characters.
func isText(s string) bool {
	for _, c := range s {
		if c == utf8.RuneError || unicode.IsControl(c) {
			return false
		}
	}
	return utf8.ValidString(s)
}

func (s kafkaShape) End(span trace.Span, p *channel.Payload) {
	errorType(span, p)
	r := raw(p.EndAttributes)
	if s.handoffs != nil {
		r = raw(p.Attributes)
	}
	if p.HasError() {
		if msg, ok := s.joinedMessage(p, r); ok {
			span.SetStatus(codes.Error, msg)
		}
		return
	}
	if part, ok := r.int(builtin.KafkaPartition); ok {
		span.SetAttributes(attribute.String("messaging.destination.partition.id", strconv.FormatInt(part, 10)))
	}
	if off, ok := r.int(builtin.KafkaOffset); ok {
		span.SetAttributes(attribute.Int64("messaging.kafka.offset", off))
	}
	if s.op != "receive" {
		return
	}
	// A reader of a consumer group may read several topics: the message
	// names the one it came from.
	if t, _ := r.str(builtin.KafkaMsgTopic); t != "" && kafkaTopic(raw(p.Attributes)) == "" {
		span.SetName(s.op + " " + t)
		span.SetAttributes(attribute.String("messaging.destination.name", t))
	}
	if key, ok := s.key(r); ok {
		span.SetAttributes(attribute.String("messaging.kafka.message.key", key))
	}
	sc, ok, bad := remoteParent(r, builtin.KafkaTraceparent, "")
	if ok {
		span.AddLink(trace.Link{SpanContext: sc})
	}
	if bad > 0 && s.invalid != nil {
		s.invalid.Add(uint64(bad))
	}
}

// joinedMessage is the message of an error sarama joined (errors.Join) of
// one *fmt.wrapError, whose message the join's is.
func (s kafkaShape) joinedMessage(p *channel.Payload, r raw) (string, bool) {
	e, ok := p.Err().(*channel.Error)
	if !ok || e.Type != "*errors.joinError" {
		return "", false
	}
	n, _ := r.int(builtin.KafkaJoinLen)
	t, _ := r.int(builtin.KafkaJoinType)
	msg, ok := r.str(builtin.KafkaJoinMessage)
	if n != 1 || s.typeName(uint64(t)) != "*fmt.wrapError" || !ok {
		return "", false
	}
	return msg, true
}

// kafkaError names a broker's refusal: kafka-go's kafka.Error and sarama's
// KError are integers, the Kafka protocol's error codes, whose messages
// cannot be read from the program; the code and its protocol name stand
// for them.
func kafkaError(e *channel.Error, ret []attribute.KeyValue) error {
	if e.Type != "kafka.Error" && e.Type != "sarama.KError" {
		return e
	}
	code, ok := raw(ret).int(builtin.KafkaErrorCode)
	if !ok {
		return e
	}
	if e.Type == "sarama.KError" {
		code = int64(int16(code))
	}
	msg := "kafka error " + strconv.FormatInt(code, 10)
	if name, ok := kafkaCodes[code]; ok {
		msg += ": " + name
	}
	return &channel.Error{Type: e.Type, Message: msg}
}

// kafkaCodes are the Kafka protocol's names of its commonest error codes.
var kafkaCodes = map[int64]string{
	-1: "UNKNOWN_SERVER_ERROR", 1: "OFFSET_OUT_OF_RANGE", 2: "CORRUPT_MESSAGE", 3: "UNKNOWN_TOPIC_OR_PARTITION",
	4: "INVALID_FETCH_SIZE", 5: "LEADER_NOT_AVAILABLE", 6: "NOT_LEADER_OR_FOLLOWER", 7: "REQUEST_TIMED_OUT",
	8: "BROKER_NOT_AVAILABLE", 9: "REPLICA_NOT_AVAILABLE", 10: "MESSAGE_TOO_LARGE", 13: "NETWORK_EXCEPTION",
	14: "COORDINATOR_LOAD_IN_PROGRESS", 15: "COORDINATOR_NOT_AVAILABLE", 16: "NOT_COORDINATOR", 17: "INVALID_TOPIC_EXCEPTION",
	18: "RECORD_LIST_TOO_LARGE", 19: "NOT_ENOUGH_REPLICAS", 20: "NOT_ENOUGH_REPLICAS_AFTER_APPEND", 21: "INVALID_REQUIRED_ACKS",
	22: "ILLEGAL_GENERATION", 25: "UNKNOWN_MEMBER_ID", 27: "REBALANCE_IN_PROGRESS", 29: "TOPIC_AUTHORIZATION_FAILED",
	30: "GROUP_AUTHORIZATION_FAILED", 31: "CLUSTER_AUTHORIZATION_FAILED",
}

// handoffs remembers, per goroutine, the last message sarama handed off
// there (its address and offset): each partition consumer hands off its
// messages from a goroutine of its own, one after another, and offers a
// message again when its consumer was slow to take it; that repeat opens
// no span. At most maxHandoffs goroutines are remembered: past that, one
// goroutine's memory is dropped (its next repeat, if any, is a span).
type handoffs struct {
	mu   sync.Mutex
	last map[uint64][2]int64
}

const maxHandoffs = 4096

func newHandoffs() *handoffs { return &handoffs{last: map[uint64][2]int64{}} }

// again says whether the message captured in r is the one last handed
// off on goroutine g, and remembers it.
func (h *handoffs) again(g uint64, r raw) bool {
	addr, ok1 := r.int(builtin.KafkaMessage)
	off, ok2 := r.int(builtin.KafkaOffset)
	if !ok1 || !ok2 {
		return false
	}
	msg := [2]int64{addr, off}
	h.mu.Lock()
	defer h.mu.Unlock()
	if last, ok := h.last[g]; ok && last == msg {
		return true
	}
	if len(h.last) >= maxHandoffs {
		for k := range h.last {
			delete(h.last, k)
			break
		}
	}
	h.last[g] = msg
	return false
}
