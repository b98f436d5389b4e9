// Command reference links in the MongoDB Go driver v1 the way the mongo
// built-in probes read it (operations, cursors, RunCommand, and the errors the driver returns),
// so that offsetgen can read its struct layouts from DWARF. The offsets
// tool writes its go.mod for each driver release; it is built, never run.
package main

import (
	"context"
	"os"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

func main() {
	if len(os.Args) < 42 { // never: only keeps the client linked in
		return
	}
	c, _ := mongo.Connect(context.Background(), options.Client().ApplyURI(os.Args[1]))
	coll := c.Database("d").Collection("c")
	coll.InsertOne(context.Background(), bson.D{})
	cur, _ := coll.Find(context.Background(), bson.D{})
	cur.Close(context.Background())
	c.Database("d").RunCommand(context.Background(), bson.D{{"ping", 1}})
}
