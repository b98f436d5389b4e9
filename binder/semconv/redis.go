package semconv

import (
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes/builtin"
)

// redisShape shapes a command's span, named by the command (fixed empty),
// or a pipeline's, named by fixed.
type redisShape struct{ fixed string }

func (s redisShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	r := raw(p.Attributes)
	op := s.fixed
	text := op
	if op == "" {
		name, _ := r.str(builtin.RedisCommand)
		op = strings.ToUpper(name)
		// The command and its argument count: values stay in the process.
		argc, _ := r.int(builtin.RedisArgc)
		text = op + strings.Repeat(" ?", max(int(argc)-1, 0))
	} else if n, ok := r.int(builtin.RedisCommands); ok {
		text = op + " " + strconv.FormatInt(n, 10) + " commands"
	}
	attrs := []attribute.KeyValue{attribute.String("db.system.name", "redis"), attribute.String("db.operation.name", op),
		attribute.String("db.query.text", text)}
	if a, ok := r.str(builtin.RedisAddr); ok && a != "" {
		host, port := hostPort(a, 6379)
		attrs = append(attrs, attribute.String("server.address", host), attribute.Int("server.port", port))
	}
	return op, trace.SpanKindClient, attrs
}

func (redisShape) End(span trace.Span, p *channel.Payload) { errorType(span, p) }

// redisError: redis.Nil reports a missing key, not a failure.
func redisError(e *channel.Error, _ []attribute.KeyValue) error {
	if e.Type == "proto.RedisError" && e.Message == "redis: nil" {
		return nil
	}
	return e
}
