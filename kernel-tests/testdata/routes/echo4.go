//go:build go1.23

package main

import (
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
	echomw "github.com/labstack/echo/v4/middleware"
)

// echo v4 (v4.13.4 on) needs Go 1.23: go.go122.mod does not require it,
// and only builds by Go 1.23 on serve it.
func init() {
	extra["echo"] = func() http.Handler {
		e := echo.New()
		e.HideBanner = true
		e.Logger.SetOutput(io.Discard) // stdout answers the test
		e.Use(echomw.RecoverWithConfig(echomw.RecoverConfig{DisablePrintStack: true}))
		e.GET("/users/:id", func(c echo.Context) error { return c.String(http.StatusOK, "user "+c.Param("id")) })
		e.GET("/panic", func(echo.Context) error { panic("echo handler") })
		return e
	}
}
