// Command kafkafixture runs the kafka tests' producers and consumers
// against the broker TCAGENT_KAFKA_ADDR names: kafka-go always, sarama
// when built with the sarama tag (sarama needs Go 1.25 or newer). Like the
// main fixture, it answers "ok CMD" to each command on stdin.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// traceparent is the creation context a message carries, as an
// instrumented producer would have set it.
const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

// commands are the fixture's commands; sarama.go adds its own.
var commands = map[string]func(addr string) error{"kafkago": kafkaGo}

func main() {
	addr := os.Getenv("TCAGENT_KAFKA_ADDR")
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		if f, ok := commands[cmd]; ok {
			if err := f(addr); err != nil {
				fmt.Println("failed " + cmd + ": " + err.Error())
				continue
			}
		}
		fmt.Println("ok " + cmd)
	}
}

// kafkaGo sends one message with a key and a traceparent, then a batch of
// three, to "orders", and one through a Writer without a topic; one to a
// topic that does not exist (an error); reads the five back from partition
// 0, and the first again in a consumer group.
func kafkaGo(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "orders", BatchTimeout: 10 * time.Millisecond, RequiredAcks: kafka.RequireOne}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("order-1"), Value: []byte("one"),
		Headers: []kafka.Header{{Key: "origin", Value: []byte("fixture")}, {Key: "traceparent", Value: []byte(traceparent)}}}); err != nil {
		return err
	}
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("two")}, kafka.Message{Value: []byte("three")}, kafka.Message{Value: []byte("four")}); err != nil {
		return err
	}
	// A Writer without a topic of its own: the message names it.
	bare := &kafka.Writer{Addr: kafka.TCP(addr), BatchTimeout: 10 * time.Millisecond, RequiredAcks: kafka.RequireOne}
	defer bare.Close()
	if err := bare.WriteMessages(ctx, kafka.Message{Topic: "orders", Value: []byte("five")}); err != nil {
		return err
	}
	bad := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "nosuch", BatchTimeout: 10 * time.Millisecond, MaxAttempts: 1}
	defer bad.Close()
	if err := bad.WriteMessages(ctx, kafka.Message{Value: []byte("lost")}); err == nil {
		return fmt.Errorf("a write to an unknown topic succeeded")
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: "orders", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	for i := 0; i < 5; i++ {
		if _, err := r.ReadMessage(ctx); err != nil {
			return err
		}
	}
	// And the first once more, as a member of consumer group g1.
	g := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: "orders", GroupID: "g1", MaxWait: 100 * time.Millisecond})
	defer g.Close()
	_, err := g.ReadMessage(ctx)
	return err
}
