package main

import (
	"strings"
	"testing"
)

func TestCheckPIDs(t *testing.T) {
	for _, ok := range [][]int{{1}, {4, 5, 6}, nil} {
		if err := checkPIDs(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range [][]int{{7, 7}, {1, 2, 3, 2}} {
		err := checkPIDs(bad)
		if err == nil || !strings.Contains(err.Error(), "given twice") {
			t.Errorf("%v: %v, want refused", bad, err)
		}
	}
}

// TestPIDFlagRepeats: the flag as cobra parses it, comma list and
// repeated flag alike, reaches the check with the repeat.
func TestPIDFlagRepeats(t *testing.T) {
	for _, args := range [][]string{{"attach", "--pid", "42,42"}, {"attach", "--pid", "42", "--pid", "42"}} {
		var out, errb strings.Builder
		root := newRoot(&out, &errb)
		root.SetArgs(args)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), "--pid 42 given twice") {
			t.Errorf("%v: %v, want refused as given twice", args, err)
		}
	}
}
