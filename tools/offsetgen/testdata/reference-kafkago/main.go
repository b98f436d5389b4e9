// Command reference links in kafka-go the way the kafka built-in probes
// read it (a Writer's send, a Reader's fetch), so that offsetgen can read
// its struct layouts from DWARF. The offsets tool writes its go.mod for
// each kafka-go release; it is built, never run.
package main

import (
	"context"
	"os"

	"github.com/segmentio/kafka-go"
)

func main() {
	if len(os.Args) < 42 { // never: only keeps the client linked in
		return
	}
	ctx := context.Background()
	w := &kafka.Writer{Addr: kafka.TCP(os.Args[1]), Topic: os.Args[2]}
	w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Headers: []kafka.Header{{Key: "k", Value: []byte("v")}}})
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: os.Args[1:2], Topic: os.Args[2]})
	m, _ := r.ReadMessage(ctx)
	println(m.Topic, m.Partition, m.Offset, len(m.Headers))
}
