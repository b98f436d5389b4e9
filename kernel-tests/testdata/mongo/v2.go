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
	Cursor     = mongo.Cursor
	WriteModel = mongo.WriteModel
)

// The v2 driver's constructors, under the names main.go uses.
var (
	findOptions = options.Find
	insertOneOf = mongo.NewInsertOneModel
	updateOneOf = mongo.NewUpdateOneModel
)

func connect(uri string) (*mongo.Client, error) {
	return mongo.Connect(options.Client().ApplyURI(uri))
}

func distinct(ctx context.Context, c *Collection, field string) error {
	return c.Distinct(ctx, field, D{}).Err()
}
