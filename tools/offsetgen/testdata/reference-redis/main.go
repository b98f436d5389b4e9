// Command reference links in go-redis the way the redis built-in probes
// read it, so that offsetgen can read its struct layouts from DWARF. The
// offsets tool writes its go.mod for each go-redis release; it is built,
// never run.
package main

import (
	"context"
	"os"

	"github.com/redis/go-redis/v9"
)

func main() {
	if len(os.Args) < 42 { // never: only keeps the client linked in
		return
	}
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: os.Args[1]})
	rdb.Get(ctx, "k")
	rdb.Pipelined(ctx, func(p redis.Pipeliner) error { return nil })
	rdb.TxPipelined(ctx, func(p redis.Pipeliner) error { return nil })
}
