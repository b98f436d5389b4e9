//go:build sarama

package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

func init() {
	commands["sarama"] = saramaProduce
	commands["saramaconsume"] = saramaConsume
}

// saramaProduce sends, through a SyncProducer, one message with a string
// key and a batch of two to "orders", and one to a topic that does not
// exist (an error).
func saramaProduce(addr string) error {
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 0
	cfg.Metadata.AllowAutoTopicCreation = false
	cfg.Metadata.Retry.Max = 0
	p, err := sarama.NewSyncProducer([]string{addr}, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "orders", Key: sarama.StringEncoder("order-2"), Value: sarama.StringEncoder("five")}); err != nil {
		return err
	}
	if err := p.SendMessages([]*sarama.ProducerMessage{{Topic: "orders", Value: sarama.StringEncoder("six")}, {Topic: "orders", Value: sarama.StringEncoder("seven")}}); err != nil {
		return err
	}
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "nosuch", Value: sarama.StringEncoder("lost")}); err == nil {
		return fmt.Errorf("a send to an unknown topic succeeded")
	}
	return nil
}

// saramaConsume reads "orders" from its oldest offset as member of the
// consumer group g2, up to the last message the fixture sent (the eighth:
// five from kafka-go, three from sarama), and marks them consumed. It is
// a slow consumer: sarama, told to wait for it at most a millisecond and
// to buffer nothing, offers it a message again when it is late to take
// it, and after a second tick hands off the rest of a fetch through its
// other select.
func saramaConsume(addr string) error {
	cfg := sarama.NewConfig()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.MaxProcessingTime = time.Millisecond
	cfg.ChannelBufferSize = 0
	g, err := sarama.NewConsumerGroup([]string{addr}, "g2", cfg)
	if err != nil {
		return err
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h := &claimReader{last: 7, done: cancel}
	for ctx.Err() == nil {
		if err := g.Consume(ctx, []string{"orders"}, h); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return err
		}
	}
	if h.read != 8 {
		return fmt.Errorf("read %d messages, want 8", h.read)
	}
	return nil
}

// claimReader is a consumer group handler that reads its claims until it
// has read the message at offset last.
type claimReader struct {
	last int64
	read int
	done func()
}

func (*claimReader) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*claimReader) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *claimReader) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		time.Sleep(20 * time.Millisecond) // slow: see saramaConsume
		s.MarkMessage(m, "")
		h.read++
		if m.Offset == h.last {
			h.done()
			return nil
		}
	}
	return nil
}
