package probes

import (
	"errors"
	"testing"
)

// TestCallSitesAndSiteProbe: CallSites finds a caller's direct CALL to a
// callee (the instruction at Off is that CALL), and refuses a callee the
// caller never calls; the site's probe fires there once per pass, its
// start and end in one hit.
func TestCallSitesAndSiteProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	b, err := Open(siteBinary(t, supportedToolchains[len(supportedToolchains)-1]))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const caller, callee = "net/http.(*conn).serve", "net/http.serverHandler.ServeHTTP"
	sites, err := CallSites(b, caller, callee)
	if err != nil || len(sites) != 1 {
		t.Fatalf("CallSites = %v, %v; want one site", sites, err)
	}
	s := sites[0]
	checkCall(t, b, s, callee)
	p := NewSiteProbe(s, 7, Runtime{GoidOffset: 152})
	if p.Func.Entry != s.Func.Entry || p.Placement.Entry != s.Off || !p.Placement.EntryIsReturn || len(p.Placement.Returns) != 0 ||
		!p.Recipe.EntryIsReturn || p.Recipe.GoidOffset != 152 || p.ID != 7 {
		t.Errorf("site probe %+v", p)
	}
	if _, err := CallSites(b, caller, "net/http.(*Transport).roundTrip"); !errors.Is(err, ErrNoCallSite) {
		t.Errorf("a callee never called: err = %v, want ErrNoCallSite", err)
	}
}
