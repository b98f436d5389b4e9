package builtin

import (
	"slices"
	"testing"
)

// TestOperationSymbols: where each driver release keeps an operation's
// Execute: x/mongo/driver/operation (v1, v2.8), the mongo package's
// unexported type (v2.8's insert and update, v2.10's every one).
func TestOperationSymbols(t *testing.T) {
	got := operationSymbols("go.mongodb.org/mongo-driver/v2", "FindAndModify")
	want := []string{
		"go.mongodb.org/mongo-driver/v2/x/mongo/driver/operation.(*FindAndModify).Execute",
		"go.mongodb.org/mongo-driver/v2/mongo.(*findAndModifyOp).Execute",
		"go.mongodb.org/mongo-driver/v2/mongo.(*findAndModifyOp).execute",
	}
	if !slices.Equal(got, want) {
		t.Errorf("%q, want %q", got, want)
	}
	// The driver's handshakes and heartbeats are no program's operation.
	for _, op := range mongoOperations {
		if op.typ == "Hello" {
			t.Error("(*Hello).Execute is traced")
		}
	}
}
