// Command routesfixture serves one parameterised route, a panicking route
// and nothing else with each router the routes set reads (gin, chi,
// gorilla/mux; echo v4 built by Go 1.23 on, echo v5 by Go 1.25 on), each
// on its own listener, plus gin behind a ServeMux catch-all "/" (whose
// pattern must not win over gin's route). Each command
// on stdin names a router: the fixture sends that router's requests to
// itself — a matched route, an unmatched path, a panicking handler — and
// answers "ok CMD".
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/gorilla/mux"
)

func ginEngine() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	gin.DefaultErrorWriter = io.Discard
	r := gin.New()
	r.Use(gin.CustomRecovery(func(c *gin.Context, _ any) { c.AbortWithStatus(http.StatusInternalServerError) }))
	r.GET("/users/:id", func(c *gin.Context) { c.String(http.StatusOK, "user "+c.Param("id")) })
	r.GET("/panic", func(*gin.Context) { panic("gin handler") })
	return r
}

func chiRouter() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/users/{id}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "user "+chi.URLParam(r, "id")) })
	r.Route("/api", func(r chi.Router) {
		r.Get("/items/{id}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "item") })
	})
	r.Get("/panic", func(http.ResponseWriter, *http.Request) { panic("chi handler") })
	return r
}

func gorillaRouter() http.Handler {
	r := mux.NewRouter()
	r.HandleFunc("/users/{id}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "user "+mux.Vars(r)["id"]) }).Methods("GET")
	// No recovery: net/http's own recovers the panic and drops the connection.
	r.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("mux handler") })
	return r
}

// extra are the routers only some builds link (echo4.go, echo5.go), by
// command.
var extra = map[string]func() http.Handler{}

// serve serves h on a new listener and returns its base URL.
func serve(h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String()
}

func main() {
	outer := http.NewServeMux()
	outer.Handle("/", ginEngine())
	base := map[string]string{
		"gin": serve(ginEngine()), "chi": serve(chiRouter()), "mux": serve(gorillaRouter()), "outer": serve(outer),
	}
	for cmd, h := range extra {
		base[cmd] = serve(h())
	}
	paths := map[string][]string{
		"gin":   {"/users/7", "/nope", "/panic"},
		"chi":   {"/users/7", "/api/items/3", "/nope", "/panic"},
		"mux":   {"/users/7", "/nope", "/panic"},
		"outer": {"/users/7"},
	}
	for cmd := range extra {
		paths[cmd] = []string{"/users/7", "/nope", "/panic"}
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		for _, p := range paths[cmd] {
			resp, err := client.Get(base[cmd] + p)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		fmt.Println("ok " + cmd)
	}
}
