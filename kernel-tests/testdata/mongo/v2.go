//go:build mongov2

package main

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The v2 driver's types, under the names main.go uses.
type (
	D          = bson.D
	Pipeline   = mongo.Pipeline
	Collection = mongo.Collection
)

func connect(uri string) (*mongo.Client, error) {
	return mongo.Connect(options.Client().ApplyURI(uri))
}

func distinct(ctx context.Context, c *Collection, field string) error {
	return c.Distinct(ctx, field, D{}).Err()
}

// bulk writes two documents and updates one in one BulkWrite: a batch of
// inserts, then one of updates.
func bulk(ctx context.Context, c *Collection) error {
	_, err := c.BulkWrite(ctx, []mongo.WriteModel{
		mongo.NewInsertOneModel().SetDocument(D{{"_id", 3}}),
		mongo.NewInsertOneModel().SetDocument(D{{"_id", 4}}),
		mongo.NewUpdateOneModel().SetFilter(D{{"_id", 3}}).SetUpdate(D{{"$set", D{{"qty", 1}}}}),
	})
	return err
}

// findBatches finds with a batch size.
func findBatches(ctx context.Context, c *Collection, filter D, n int32) (*mongo.Cursor, error) {
	return c.Find(ctx, filter, options.Find().SetBatchSize(n))
}
