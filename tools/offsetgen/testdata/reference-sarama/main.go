// Command reference links in sarama the way the kafka built-in probes
// read it (a SyncProducer's sends, a partition consumer's messages), so that offsetgen can read its struct
// layouts from DWARF. The offsets tool writes its go.mod for each sarama
// release; it is built, never run.
package main

import (
	"os"

	"github.com/IBM/sarama"
)

func main() {
	if len(os.Args) < 42 { // never: only keeps the producer linked in
		return
	}
	p, _ := sarama.NewSyncProducer(os.Args[1:2], sarama.NewConfig())
	p.SendMessage(&sarama.ProducerMessage{Topic: os.Args[2], Key: sarama.StringEncoder("k")})
	p.SendMessages([]*sarama.ProducerMessage{{Topic: os.Args[2]}})
	c, _ := sarama.NewConsumer(os.Args[1:2], sarama.NewConfig())
	pc, _ := c.ConsumePartition(os.Args[2], 0, sarama.OffsetOldest)
	m := <-pc.Messages()
	println(m.Topic, m.Partition, m.Offset, string(m.Key), string(m.Headers[0].Value))
}
