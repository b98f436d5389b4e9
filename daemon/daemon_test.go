package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tcagent/tcagent/internal/proc"
	"github.com/tcagent/tcagent/probes"
)

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "web.yaml"), []byte("probes:\n  - symbol: main.handle\n"), 0o644)
	cfg, err := ParseConfig([]byte(`selectors:
  - name: web
    exe: /srv/*/web
    cmdline: "--mode=(api|web)"
    probes: web.yaml
    builtin: [http, sql]
  - kubernetes: {namespace: shop, pod_labels: {app: cart}}
    builtin: [none]
    probes: web.yaml
  - port: 8080
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Selectors) != 3 || cfg.Selectors[1].Name != "selector 2" {
		t.Fatalf("selectors: %+v", cfg.Selectors)
	}
	if s := cfg.Selectors[0]; len(s.Specs()) != 1 || strings.Join(s.BuiltinSets(), ",") != "http,sql" {
		t.Errorf("web: specs %v, builtin %v", s.Specs(), s.BuiltinSets())
	}
	if b := cfg.Selectors[1].BuiltinSets(); b == nil || len(b) != 0 {
		t.Errorf("builtin [none]: %v, want empty", b)
	}
	if b := cfg.Selectors[2].BuiltinSets(); b != nil {
		t.Errorf("no builtin key: %v, want nil (all)", b)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"", "empty"},
		{"selectors: []", "no selectors"},
		{"selectors:\n  - builtin: [http]", "no criterion"},
		{"selectors:\n  - exe: /a\n    colour: red", `line 3: unknown key "colour" in selector 1`},
		{"selectors:\n  - exe: '/a/['", "exe"},
		{"selectors:\n  - exe: relative/path", "absolute"},
		{"selectors:\n  - cmdline: '('", "cmdline"},
		{"selectors:\n  - port: 70000", "port 70000"},
		{"selectors:\n  - container_id: abc", "container_id"},
		{"selectors:\n  - exe: /a\n    builtin: [nope]", `builtin "nope"`},
		{"selectors:\n  - exe: /a\n    builtin: [none]", "nothing to trace"},
		{"selectors:\n  - exe: /a\n    probes: missing.yaml", "missing.yaml"},
	} {
		_, err := ParseConfig([]byte(c.yaml), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one saying %q", c.yaml, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error on several lines: %q", c.yaml, err)
		}
	}
}

func TestSelectorMatch(t *testing.T) {
	cfg, err := ParseConfig([]byte(`selectors:
  - exe: /srv/*/web
    process_name: we?
    cmdline: "--mode=api"
    container_id: 0123456789ab
    cgroup: /kubepods.slice/*
    kubernetes: {namespace: shop, pod_labels: {app: cart}, container: web}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	sel := &cfg.Selectors[0]
	p := &Process{Exe: "/srv/v2/web", Cmdline: "/srv/v2/web --mode=api", ContainerID: "0123456789abcdef" + strings.Repeat("0", 48),
		Cgroup: "/kubepods.slice/x"}
	pod := &Pod{Namespace: "shop", Labels: map[string]string{"app": "cart", "tier": "1"}, Container: "web"}
	if others, port := sel.match(p, pod); !others || !port {
		t.Fatalf("a process meeting every criterion: match %v, %v", others, port)
	}
	for name, change := range map[string]func(p *Process, pod *Pod) *Pod{
		"exe":       func(p *Process, pod *Pod) *Pod { p.Exe = "/srv/v2/sub/web"; return pod },
		"cmdline":   func(p *Process, pod *Pod) *Pod { p.Cmdline = "web --mode=batch"; return pod },
		"container": func(p *Process, pod *Pod) *Pod { p.ContainerID = ""; return pod },
		"cgroup":    func(p *Process, pod *Pod) *Pod { p.Cgroup = "/system.slice/x"; return pod },
		"no pod":    func(p *Process, pod *Pod) *Pod { return nil },
		"namespace": func(p *Process, pod *Pod) *Pod { pod.Namespace = "dev"; return pod },
		"label":     func(p *Process, pod *Pod) *Pod { pod.Labels = map[string]string{"app": "shop"}; return pod },
		"container name": func(p *Process, pod *Pod) *Pod {
			pod.Container = "sidecar"
			return pod
		},
	} {
		p2, pod2 := *p, *pod
		if others, _ := sel.match(&p2, change(&p2, &pod2)); others {
			t.Errorf("%s differs: matched", name)
		}
	}
}

func TestParseCgroup(t *testing.T) {
	id := "4f1c2b0e8d7a6c5b4f1c2b0e8d7a6c5b4f1c2b0e8d7a6c5b4f1c2b0e8d7a6c5b"
	for _, c := range []struct{ cg, container, pod string }{
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-" + id + ".scope",
			id, "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"},
		{"/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/" + id, id, "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"},
		{"/system.slice/docker-" + id + ".scope", id, ""},
		{"/user.slice/user-0.slice/session-1.scope", "", ""},
	} {
		container, pod := proc.ContainerID(c.cg), podUID(c.cg)
		if container != c.container || pod != c.pod {
			t.Errorf("%s: container %q pod %q, want %q %q", c.cg, container, pod, c.container, c.pod)
		}
	}
}

// TestKubePods serves the node's pod list as the API server does and
// checks that a process's pod and container are found by its cgroup's ids,
// that the list is asked for this node only, and only when a pod is new.
func TestKubePods(t *testing.T) {
	id := strings.Repeat("ab", 32)
	var lists atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/pods" {
			http.NotFound(w, r)
			return
		}
		if got := r.URL.Query().Get("fieldSelector"); got != "spec.nodeName=node-1" {
			t.Errorf("fieldSelector %q, want spec.nodeName=node-1", got)
		}
		lists.Add(1)
		list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Items: []corev1.Pod{{
			ObjectMeta: metav1.ObjectMeta{Name: "cart-7d9f", Namespace: "shop", UID: types.UID("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"),
				Labels: map[string]string{"app": "cart"}},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
				{Name: "istio-proxy", ContainerID: "containerd://" + strings.Repeat("cd", 32)},
				{Name: "cart", ContainerID: "containerd://" + id},
			}},
		}}}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(list)
	}))
	defer srv.Close()
	k, err := NewKubePods(&KubeConfig{Host: srv.URL}, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	k.now = func() time.Time { return now }
	p := &Process{ContainerID: id, PodUID: "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"}
	pod, err := k.Pod(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if pod == nil || pod.Name != "cart-7d9f" || pod.Namespace != "shop" || pod.Container != "cart" || pod.Labels["app"] != "cart" {
		t.Fatalf("pod %+v", pod)
	}
	if _, err := k.Pod(context.Background(), p); err != nil || lists.Load() != 1 {
		t.Errorf("a known pod listed again: %d lists, %v", lists.Load(), err)
	}
	if pod, _ := k.Pod(context.Background(), &Process{}); pod != nil {
		t.Errorf("a process in no pod: %+v", pod)
	}
	// An unknown pod lists again, at most once a second (of the
	// injected clock).
	other := &Process{PodUID: "00000000-0000-0000-0000-000000000000"}
	k.Pod(context.Background(), other)
	now = now.Add(999 * time.Millisecond)
	k.Pod(context.Background(), other)
	if lists.Load() != 1 {
		t.Errorf("%d lists within a second, want 1", lists.Load())
	}
	now = now.Add(time.Millisecond)
	k.Pod(context.Background(), other)
	if lists.Load() != 2 {
		t.Errorf("%d lists a second after the first, want 2", lists.Load())
	}
	k.Pod(context.Background(), other)
	if lists.Load() != 2 {
		t.Errorf("%d lists, want 2: listed again at once after listing", lists.Load())
	}
	attrs := podAttributes(pod)
	if len(attrs) != 4 || attrs[3].Value.AsString() != "cart" {
		t.Errorf("resource attributes %v", attrs)
	}
}

func TestListeningInodes(t *testing.T) {
	f := filepath.Join(t.TempDir(), "tcp")
	os.WriteFile(f, []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 100 0 0 10 0
`), 0o644)
	if got := listeningInodes(f, 8080); len(got) != 1 || got[0] != "111" {
		t.Errorf("listening on 8080: %v, want [111] (not the established one)", got)
	}
	if got := listeningInodes(f, 443); len(got) != 0 {
		t.Errorf("listening on 443: %v", got)
	}
}

func TestGoBuildID(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id, err := goBuildID(self)
	if err != nil || id == "" {
		t.Fatalf("the test binary's build id: %q, %v", id, err)
	}
	if _, err := goBuildID("/bin/sh"); err != errNotGo {
		t.Errorf("/bin/sh: %v, want errNotGo", err)
	}
}

// TestDefaults: the command line's --probes, --builtin and --service-name
// serve only the selectors that say nothing of their own.
func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "own.yaml"), []byte("probes:\n  - symbol: main.own\n"), 0o644)
	cfg, err := ParseConfig([]byte(`selectors:
  - exe: /a
    probes: own.yaml
    builtin: [http]
    service_name: a
  - exe: /b
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := probes.Parse([]byte("probes:\n  - symbol: main.flag\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Defaults(specs, []string{}, "from-flag")
	a, b := cfg.Selectors[0], cfg.Selectors[1]
	if a.Specs()[0].Symbol != "main.own" || strings.Join(a.BuiltinSets(), ",") != "http" || a.ServiceName != "a" {
		t.Errorf("a selector's own settings overridden: %+v", a)
	}
	if b.Specs()[0].Symbol != "main.flag" || b.BuiltinSets() == nil || len(b.BuiltinSets()) != 0 || b.ServiceName != "from-flag" {
		t.Errorf("defaults not applied: specs %v, builtin %v, service %q", b.Specs(), b.BuiltinSets(), b.ServiceName)
	}
}

// TestKubePodsRequest checks the request the pod list is asked with: the
// service account's token, read again at each list (the kubelet rotates
// it), and a refusal's status and message in the error, never a list.
func TestKubePodsRequest(t *testing.T) {
	var auth atomic.Value
	refuse := atomic.Bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		if refuse.Load() {
			http.Error(w, `pods is forbidden: User "system:serviceaccount:x:y" cannot list resource "pods"`, http.StatusForbidden)
			return
		}
		w.Write([]byte(`{"kind":"PodList","apiVersion":"v1","items":[{"metadata":{"name":"a","namespace":"n","uid":"u1"}}]}`))
	}))
	defer srv.Close()
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("first\n"), 0o600)
	k, err := NewKubePods(&KubeConfig{Host: srv.URL, TokenFile: token}, "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	k.now = func() time.Time { return now }
	if pod, err := k.Pod(context.Background(), &Process{PodUID: "u1"}); err != nil || pod == nil || pod.Name != "a" || pod.Namespace != "n" {
		t.Fatalf("pod %+v, %v", pod, err)
	}
	if got := auth.Load(); got != "Bearer first" {
		t.Errorf("Authorization %q, want Bearer first", got)
	}
	os.WriteFile(token, []byte("second"), 0o600)
	refuse.Store(true)
	now = now.Add(time.Second)
	pod, err := k.Pod(context.Background(), &Process{PodUID: "u2"})
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden") || !strings.Contains(err.Error(), "cannot list") || pod != nil {
		t.Errorf("a refused list: pod %+v, error %v", pod, err)
	}
	if got := auth.Load(); got != "Bearer second" {
		t.Errorf("Authorization %q after the token rotated, want Bearer second", got)
	}
}

func TestInClusterOutside(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if cfg, ok, err := InCluster(); cfg != nil || ok || err != nil {
		t.Errorf("outside a cluster: %+v %v %v", cfg, ok, err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	if _, err := os.Stat(serviceAccount); err == nil {
		t.Skip("this machine has a service account")
	}
	if _, ok, err := InCluster(); ok || err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("no service account: ok %v, error %v", ok, err)
	}
}
