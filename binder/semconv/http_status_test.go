package semconv

import "testing"

// TestStatusErrorType: a server fails on 5xx only, a client on 4xx and 5xx,
// and error.type is the code as a string.
func TestStatusErrorType(t *testing.T) {
	for _, c := range []struct {
		status         int64
		server, client string
	}{
		{200, "", ""},
		{302, "", ""},
		{399, "", ""},
		{400, "", "400"},
		{404, "", "404"},
		{499, "", "499"},
		{500, "500", "500"},
		{503, "503", "503"},
		{599, "599", "599"},
	} {
		if got := statusErrorType(c.status, true); got != c.server {
			t.Errorf("server %d: error.type %q, want %q", c.status, got, c.server)
		}
		if got := statusErrorType(c.status, false); got != c.client {
			t.Errorf("client %d: error.type %q, want %q", c.status, got, c.client)
		}
	}
}
