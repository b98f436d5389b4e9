//go:build sarama

package main

import (
	"fmt"

	"github.com/IBM/sarama"
)

func init() { commands["sarama"] = saramaProduce }

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
