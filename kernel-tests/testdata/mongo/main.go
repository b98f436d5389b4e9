// Command mongofixture runs the mongo set's kernel tests' operations with
// the MongoDB Go driver, v1 (v1.go) or, built with -tags mongov2, v2
// (v2.go), against the server TCAGENT_MONGO_URI names. Like the main
// fixture, it answers "ok CMD" to each command on stdin.
package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
)

func main() {
	ctx := context.Background()
	client, err := connect(os.Getenv("TCAGENT_MONGO_URI"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	orders := client.Database("shop").Collection("orders")
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		switch cmd {
		case "reset":
			must(orders.Drop(ctx))
		case "crud":
			_, err := orders.InsertOne(ctx, D{{"_id", 1}, {"item", "apple"}, {"qty", 5}, {"card", "4111-1111"}})
			must(err)
			cur, err := orders.Find(ctx, D{{"qty", D{{"$gt", 1}}}})
			must(err)
			var all []D
			must(cur.All(ctx, &all))
			_, err = orders.UpdateOne(ctx, D{{"_id", 1}}, D{{"$set", D{{"qty", 7}}}})
			must(err)
			cur, err = orders.Aggregate(ctx, Pipeline{{{"$match", D{{"qty", D{{"$gte", 2}}}}}}})
			must(err)
			must(cur.All(ctx, &all))
			_, err = orders.EstimatedDocumentCount(ctx)
			must(err)
			must(distinct(ctx, orders, "item"))
			must(orders.FindOneAndUpdate(ctx, D{{"_id", 1}}, D{{"$inc", D{{"qty", 1}}}}).Err())
			_, err = orders.DeleteOne(ctx, D{{"_id", 1}})
			must(err)
			must(bulk(ctx, orders))
			must(client.Database("shop").RunCommand(ctx, D{{"ping", 1}}).Err())
			if client.Database("shop").RunCommand(ctx, D{{"nosuchcommand", 1}}).Err() == nil {
				fmt.Fprintln(os.Stderr, "nosuchcommand: no error")
				os.Exit(1)
			}
		case "cursor":
			// Five documents in batches of two: the find's first batch,
			// then two getMores, the last one closing the cursor on the
			// server (so All's close sends nothing); then a cursor closed
			// while the server still holds it: killCursors.
			_, err := orders.InsertMany(ctx, []any{D{{"_id", 10}}, D{{"_id", 11}}, D{{"_id", 12}}, D{{"_id", 13}}, D{{"_id", 14}}})
			must(err)
			cur, err := findBatches(ctx, orders, D{{"_id", D{{"$gte", 10}}}}, 2)
			must(err)
			var all []D
			must(cur.All(ctx, &all))
			if len(all) != 5 {
				fmt.Fprintln(os.Stderr, "cursor: got", len(all))
				os.Exit(1)
			}
			cur, err = findBatches(ctx, orders, D{{"_id", D{{"$gte", 10}}}}, 2)
			must(err)
			must(cur.Close(ctx))
		case "cursorgone":
			// A cursor the server forgot (killed by a command of the
			// program's): the next getMore fails.
			cur, err := findBatches(ctx, orders, D{{"_id", D{{"$gte", 10}}}}, 2)
			must(err)
			must(client.Database("shop").RunCommand(ctx, D{{"killCursors", "orders"}, {"cursors", []int64{cur.ID()}}}).Err())
			for cur.Next(ctx) {
			}
			if cur.Err() == nil {
				fmt.Fprintln(os.Stderr, "cursorgone: no error")
				os.Exit(1)
			}
			cur.Close(ctx)
		case "dup":
			// The same _id twice: the server refuses the second insert.
			_, err := orders.InsertOne(ctx, D{{"_id", 2}})
			must(err)
			if _, err := orders.InsertOne(ctx, D{{"_id", 2}}); err == nil {
				fmt.Fprintln(os.Stderr, "dup: no duplicate key error")
				os.Exit(1)
			}
		case "down":
			// A server that is not there: server selection gives up.
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			addr := ln.Addr().String()
			ln.Close()
			down, err := connect("mongodb://" + addr + "/?serverSelectionTimeoutMS=200&connectTimeoutMS=200")
			must(err)
			if err := down.Database("shop").Collection("orders").FindOne(ctx, D{}).Err(); err == nil {
				fmt.Fprintln(os.Stderr, "down: no error")
				os.Exit(1)
			}
			down.Disconnect(ctx)
		case "nested":
			must(lookup(ctx, orders))
		}
		fmt.Println("ok " + cmd)
	}
}

// lookup is a function of the program's own, for a custom probe: the
// operations it makes are its span's children.
//
//go:noinline
func lookup(ctx context.Context, orders *Collection) error {
	return orders.FindOne(ctx, D{{"item", "pear"}}).Err()
}

func must(err error) {
	if err != nil && !strings.Contains(err.Error(), "no documents") {
		fmt.Fprintln(os.Stderr, "mongofixture:", err)
		os.Exit(1)
	}
}

// bulk writes two documents and updates one in one BulkWrite: a batch of
// inserts, then one of updates.
func bulk(ctx context.Context, c *Collection) error {
	_, err := c.BulkWrite(ctx, []WriteModel{
		insertOneOf().SetDocument(D{{"_id", 3}}),
		insertOneOf().SetDocument(D{{"_id", 4}}),
		updateOneOf().SetFilter(D{{"_id", 3}}).SetUpdate(D{{"$set", D{{"qty", 1}}}}),
	})
	return err
}

// findBatches finds with a batch size.
func findBatches(ctx context.Context, c *Collection, filter D, n int32) (*Cursor, error) {
	return c.Find(ctx, filter, findOptions().SetBatchSize(n))
}
