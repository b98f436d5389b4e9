//go:build go1.25

package main

import (
	"io"
	"log/slog"
	"net/http"

	echo5 "github.com/labstack/echo/v5"
)

// echo v5 needs Go 1.25: only go.new.mod requires it, and only builds by
// Go 1.25 on serve it (the "echo5" command sends nothing elsewhere).
func init() {
	extra["echo5"] = func() http.Handler {
		e := echo5.New()
		e.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) // stdout answers the test
		// No recovery: the panic unwinds through echo's deferred Put
		// (where the route is read) to net/http's own recovery.
		e.GET("/users/:id", func(c *echo5.Context) error { return c.String(http.StatusOK, "user "+c.Param("id")) })
		e.GET("/panic", func(*echo5.Context) error { panic("echo v5 handler") })
		return e
	}
}
