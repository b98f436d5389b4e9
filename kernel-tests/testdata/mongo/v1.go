//go:build !mongov2

package main

import (
	"context"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// The v1 driver's types, under the names main.go uses.
type (
	D          = bson.D
	Pipeline   = mongo.Pipeline
	Collection = mongo.Collection
	Cursor     = mongo.Cursor
	WriteModel = mongo.WriteModel
)

// The v1 driver's constructors, under the names main.go uses.
var (
	findOptions = options.Find
	insertOneOf = mongo.NewInsertOneModel
	updateOneOf = mongo.NewUpdateOneModel
)

func connect(uri string) (*mongo.Client, error) {
	return mongo.Connect(context.Background(), options.Client().ApplyURI(uri))
}

func distinct(ctx context.Context, c *Collection, field string) error {
	_, err := c.Distinct(ctx, field, D{})
	return err
}
