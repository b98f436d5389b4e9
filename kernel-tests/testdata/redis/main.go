// Command redisfixture runs the built-in Redis tests' commands with go-redis
// against the server TCAGENT_REDIS_ADDR names. Like the main fixture, it
// answers "ok CMD" to each command on stdin.
package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

func main() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("TCAGENT_REDIS_ADDR")})
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		switch cmd {
		case "redis":
			rdb.Set(ctx, "fruit", "apple", 0)
			rdb.Get(ctx, "fruit")
			rdb.Get(ctx, "missing") // redis.Nil: not an error
			rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Incr(ctx, "n")
				p.Incr(ctx, "n")
				p.Incr(ctx, "n")
				return nil
			})
			rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "a", "1", 0)
				p.Get(ctx, "a")
				return nil
			})
		case "down":
			// A server that is not there.
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			addr := ln.Addr().String()
			ln.Close()
			down := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			down.Get(ctx, "fruit")
			down.Close()
		}
		fmt.Println("ok " + cmd)
	}
}
