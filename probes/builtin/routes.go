package builtin

import (
	"errors"
	"strings"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// The role and capture keys of the routes set: its span side
// (binder/semconv/routes.go) reads the captures under these keys and puts
// the router's matched route on the enclosing http.server span. The role's
// Arg names the router (one of the Router* names), whose syntax the span
// side composes the route by.
const (
	RoleHTTPRoute = "http.route"

	RouterGin, RouterChi, RouterEcho, RouterEcho5, RouterMux = "gin", "chi", "echo", "echo/v5", "gorilla/mux"

	RouteTemplate = "route"    // gin's fullPath, echo's path, gorilla/mux's path template, chi's routePattern
	RouteCtxType  = "ctx_type" // the type word of the context given back to a pool (gin, echo, chi)
	RoutePatterns = "patterns" // chi: how many route patterns the request's Context holds
	RouteOuter    = "outer"    // chi: the first of them, the outermost router's
	ginPkg        = "github.com/gin-gonic/gin"
	chiPkg        = "github.com/go-chi/chi/v5"
	echoPkg       = "github.com/labstack/echo/v4"
	echo5Pkg      = "github.com/labstack/echo/v5"
	muxPkg        = "github.com/gorilla/mux"
)

// Each router's route is read at a direct CALL its own code makes after
// the match, with the router's state in that call's argument registers:
// the kernel emulates a probe on a CALL, where a RET probe (after the
// match function returned) is single-stepped. The probe opens no span.
//
//   - gin: (*Engine).ServeHTTP returns its *Context to the pool,
//     engine.pool.Put(c), after handleHTTPRequest: c (x's data word, RCX)
//     still holds fullPath, the matched route, "" when none matched (the
//     pool's next Get resets it). A panic no gin recovery stops never
//     gets there: that request has no route.
//   - echo v4: (*Echo).ServeHTTP puts its *context back the same way after
//     the handler chain: c.path is the route Find matched ("" when none).
//   - echo v5: (*Echo).serveHTTP defers that Put, which Go compiles into
//     its deferwrap1 closure: there the route is read on every return,
//     a panic's unwinding too.
//   - chi: the top (*Mux).ServeHTTP puts its *Context back the same way
//     after the routers below it ran: RoutePatterns holds the pattern
//     each router (a mounted one too) matched, routePattern the
//     innermost's, "" when the innermost router matched nothing. The
//     route of up to two nested routers is read whole, a deeper one's is
//     not (the span side says so).
//   - gorilla/mux (v1.7.4 on): (*Router).ServeHTTP, when Match found a
//     route, calls requestWithRoute(req, match.Route): the *Route in RBX,
//     whose path template (regexp.path.template) is the route.
//
// The registers are the ABI's argument order: RAX, RBX, RCX on amd64, R0,
// R1, R2 on arm64 (where the sites are BLs, which its kernel simulates).
const (
	regPoolData = 2 // sync.(*Pool).Put(p, x any): x's type in RBX (R1), data in RCX (R2)
	regPoolType = 1
	regMuxRoute = 1 // requestWithRoute(r, route): route in RBX (R1)
)

// router says where one router's route is read.
type router struct {
	name, caller string
	callee       string // the caller's direct CALLs to it are the sites
	fields       []string
	capture      func(p *probes.Probe, offs []uint16)
	typeName     string // the type the pool hands back, "" for none
}

// pooledRoute reads the route, a string field of the context given back to
// a pool.
func pooledRoute(p *probes.Probe, o []uint16) {
	capture(p, false, RouteTemplate, field(regPoolData, 0, o[0]))
}

var routers = []router{
	{RouterGin, ginPkg + ".(*Engine).ServeHTTP", "sync.(*Pool).Put", []string{ginPkg + ".Context.fullPath"},
		pooledRoute, "*gin.Context"},
	{RouterEcho, echoPkg + ".(*Echo).ServeHTTP", "sync.(*Pool).Put", []string{echoPkg + ".context.path"},
		pooledRoute, "*echo.context"},
	{RouterEcho5, echo5Pkg + ".(*Echo).serveHTTP.deferwrap1", "sync.(*Pool).Put", []string{echo5Pkg + ".Context.path"},
		pooledRoute, "*echo.Context"},
	{RouterChi, chiPkg + ".(*Mux).ServeHTTP", "sync.(*Pool).Put",
		[]string{chiPkg + ".Context.RoutePatterns", chiPkg + ".Context.routePattern"}, func(p *probes.Probe, o []uint16) {
			// How many patterns the routers matched, the innermost's
			// (routePattern) and the outermost's: every read stays
			// within the slice's length (a pooled Context keeps stale
			// strings past it, and a fresh one has nothing there).
			capture(p, false, RoutePatterns, field(regPoolData, 8, o[0]+8))
			capture(p, false, RouteTemplate, field(regPoolData, 0, o[1]))
			capture(p, false, RouteOuter, field(regPoolData, 0, o[0], 0))
		}, "*chi.Context"},
	{RouterMux, muxPkg + ".(*Router).ServeHTTP", muxPkg + ".requestWithRoute",
		[]string{muxPkg + ".Route.routeConf", muxPkg + ".routeConf.regexp", muxPkg + ".routeRegexpGroup.path", muxPkg + ".routeRegexp.template"},
		func(p *probes.Probe, o []uint16) {
			// Route embeds routeConf, which holds the routeRegexpGroup
			// by value; its path is a *routeRegexp.
			capture(p, false, RouteTemplate, field(regMuxRoute, 0, o[0]+o[1]+o[2], o[3]))
		}, ""},
}

// routesProbes places one probe per router the binary uses. A router whose
// site or fields cannot be found is left out and said so in the report;
// the others still apply.
func routesProbes(b *probes.Binary, o *offsets, _ Options, rt probes.Runtime, id uint32) ([]*probes.Probe, error) {
	var out []*probes.Probe
	var missing []string
	for _, r := range routers {
		if !hasFunc(b, r.caller) {
			continue // not used
		}
		ps, err := routeProbes(b, o, r, rt, id+uint32(len(out)))
		if err != nil {
			missing = append(missing, r.name+": "+err.Error())
			continue
		}
		out = append(out, ps...)
	}
	if len(missing) > 0 {
		if len(out) == 0 {
			return nil, errors.New(strings.Join(missing, "; "))
		}
		o.partial = "no route from " + strings.Join(missing, "; ")
	}
	return out, nil
}

func routeProbes(b *probes.Binary, o *offsets, r router, rt probes.Runtime, id uint32) ([]*probes.Probe, error) {
	offs := make([]uint16, len(r.fields))
	for i, f := range r.fields {
		off, err := o.must(f)
		if err != nil {
			return nil, err
		}
		offs[i] = off
	}
	sites, err := probes.CallSites(b, r.caller, r.callee)
	if err != nil {
		return nil, err
	}
	var out []*probes.Probe
	for _, s := range sites {
		p := probes.NewSiteProbe(s, id+uint32(len(out)), rt)
		r.capture(p, offs)
		if r.typeName != "" {
			capture(p, false, RouteCtxType, bpf.Capture{Kind: bpf.CapReg, Reg: regPoolType, Size: 8})
		}
		p.Spec.Name = RoleHTTPRoute
		p.Role = probes.Role{Kind: probes.RoleEnrich, Name: RoleHTTPRoute, Arg: r.name}
		out = append(out, p)
	}
	return out, nil
}

// UsesRouter reports whether b has a router the routes set reads: its
// server spans may carry a router's route.
func UsesRouter(b *probes.Binary) bool {
	for _, r := range routers {
		if hasFunc(b, r.caller) {
			return true
		}
	}
	return false
}

// RouteCtxTypeOf is the type the routes set's probe for router checks its
// captured context against ("" when it reads no pooled context).
func RouteCtxTypeOf(name string) string {
	for _, r := range routers {
		if r.name == name {
			return r.typeName
		}
	}
	return ""
}
