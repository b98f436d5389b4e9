// Command kafkabroker is the kafka tests' broker: franz-go's kfake, a
// Kafka-wire-protocol cluster of one broker, run as a process of its own
// on a kernel-chosen port of 127.0.0.1. It prints its address on stdout
// and serves until stdin closes or it is killed. Topics are created on
// first use; "orders" exists from the start.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(1, "orders"), kfake.AllowAutoTopicCreation())
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafkabroker:", err)
		os.Exit(1)
	}
	defer c.Close()
	fmt.Println(c.ListenAddrs()[0])
	io.Copy(io.Discard, os.Stdin)
}
