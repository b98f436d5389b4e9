// Package deploy holds tcagent's container build, Helm chart, the
// Kubernetes manifest rendered from it, a Grafana dashboard and Prometheus
// alert rules; its tests check them: the chart's renderings and the
// manifest against the Kubernetes API's own OpenAPI schemas, the
// privileges they grant, the Dockerfile's build and the alert rules'
// syntax (kernel-tests/dashboard_test.go evaluates the dashboard's and the
// rules' expressions on a live agent).
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/tcagent/tcagent/daemon"
)

// kubernetesRelease is the Kubernetes whose schemas the manifest must
// satisfy: its module, from the Go module proxy, carries the API's OpenAPI
// v3 documents.
const kubernetesRelease = "v1.37.2"

// openAPIDir downloads (once, into the module cache) Kubernetes' source
// and returns its OpenAPI v3 directory.
func openAPIDir(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", "k8s.io/kubernetes@"+kubernetesRelease)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("download the Kubernetes schemas: %v\n%s", err, out)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("download the Kubernetes schemas: %s %v", mod.Error, err)
	}
	return filepath.Join(mod.Dir, "api", "openapi-spec", "v3")
}

// manifest reads deploy/kubernetes/daemonset.yaml's documents.
func manifest(t *testing.T) []map[string]any {
	t.Helper()
	data, err := os.ReadFile("kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return documents(t, data)
}

// documents decodes a stream of YAML documents, skipping empty ones.
func documents(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return docs
}

// validator checks objects against the Kubernetes schemas, strictly: a
// field the API does not know is an error (the API server would drop it
// silently, which hides a typo such as hostPid), as kubeconform's strict
// mode does.
type validator struct {
	dir     string
	schemas map[string]*jsonschema.Schema // by apiVersion/kind
}

func (v *validator) validate(obj map[string]any) error {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	key := apiVersion + "/" + kind
	sch, ok := v.schemas[key]
	if !ok {
		var err error
		if sch, err = v.compile(apiVersion, kind); err != nil {
			return err
		}
		v.schemas[key] = sch
	}
	// Through JSON, so that numbers and maps have the types the checker
	// expects.
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

func (v *validator) compile(apiVersion, kind string) (*jsonschema.Schema, error) {
	group, version, ok := strings.Cut(apiVersion, "/")
	file := "apis__" + group + "__" + version + "_openapi.json"
	if !ok {
		group, version, file = "", apiVersion, "api__"+apiVersion+"_openapi.json"
	}
	data, err := os.ReadFile(filepath.Join(v.dir, file))
	if err != nil {
		return nil, fmt.Errorf("%s %s: no schemas: %w", apiVersion, kind, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	name := ""
	for n, s := range schemas {
		gvks, _ := s.(map[string]any)["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			g := g.(map[string]any)
			if g["group"] == group && g["version"] == version && g["kind"] == kind {
				name = n
			}
		}
	}
	if name == "" {
		return nil, fmt.Errorf("%s %s: no such kind in %s", apiVersion, kind, file)
	}
	strict(doc)
	c := jsonschema.NewCompiler()
	url := "file:///" + file
	if err := c.AddResource(url, doc); err != nil {
		return nil, err
	}
	return c.Compile(url + "#/components/schemas/" + strings.ReplaceAll(name, "/", "~1"))
}

// strict forbids, in every object schema that lists its properties, the
// properties it does not list.
func strict(v any) {
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v["properties"]; ok {
			if _, ok := v["additionalProperties"]; !ok {
				v["additionalProperties"] = false
			}
		}
		for _, e := range v {
			strict(e)
		}
	case []any:
		for _, e := range v {
			strict(e)
		}
	}
}

// TestManifestSchema validates every object of the manifest against the
// schemas of Kubernetes' API, and checks, on copies broken on purpose,
// that the checker would catch a misspelt field and a wrong type.
func TestManifestSchema(t *testing.T) {
	v := &validator{dir: openAPIDir(t), schemas: map[string]*jsonschema.Schema{}}
	docs := manifest(t)
	var kinds []string
	for _, doc := range docs {
		kinds = append(kinds, doc["kind"].(string))
		if err := v.validate(doc); err != nil {
			t.Errorf("%s %v: %v", doc["kind"], doc["metadata"].(map[string]any)["name"], err)
		}
	}
	want := []string{"Namespace", "ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "DaemonSet"}
	if !slices.Equal(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
	ds := find(t, docs, "DaemonSet")
	pod := dig(ds, "spec", "template", "spec")
	pod["hostPid"] = true // the real field is hostPID
	if err := v.validate(ds); err == nil || !strings.Contains(err.Error(), "hostPid") {
		t.Errorf("a misspelt field passed: %v", err)
	}
	delete(pod, "hostPid")
	pod["terminationGracePeriodSeconds"] = "thirty"
	if err := v.validate(ds); err == nil {
		t.Error("a string where the API wants an integer passed")
	}
}

// TestManifestPrivileges checks what the DaemonSet may do: the node's
// processes, four capabilities and no more, pods read-only, the readiness,
// liveness and scrape settings on the port the agent serves, and a configuration
// the daemon accepts.
func TestManifestPrivileges(t *testing.T) {
	privileges(t, manifest(t), []string{"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"})
}

// privileges checks the objects of a manifest as TestManifestPrivileges
// says, with caps the capabilities the agent must be given.
func privileges(t *testing.T, docs []map[string]any, caps []string) {
	t.Helper()
	ds := find(t, docs, "DaemonSet")
	pod := dig(ds, "spec", "template", "spec")
	if pod["hostPID"] != true {
		t.Error("hostPID is not set: the agent would see its own pod's processes only")
	}
	for _, k := range []string{"hostNetwork", "hostIPC"} {
		if _, ok := pod[k]; ok {
			t.Errorf("%s is set: not needed", k)
		}
	}
	c := pod["containers"].([]any)[0].(map[string]any)
	sc := c["securityContext"].(map[string]any)
	capabilities := sc["capabilities"].(map[string]any)
	if !slices.Equal(toStrings(capabilities["drop"]), []string{"ALL"}) {
		t.Errorf("capabilities dropped: %v, want ALL", capabilities["drop"])
	}
	if got := toStrings(capabilities["add"]); !slices.Equal(got, caps) {
		t.Errorf("capabilities added: %v, want %v", got, caps)
	}
	if sc["privileged"] != false || sc["allowPrivilegeEscalation"] != false || sc["readOnlyRootFilesystem"] != true {
		t.Errorf("security context %v", sc)
	}
	args := strings.Join(toStrings(c["args"]), " ")
	m := regexp.MustCompile(`--metrics-addr=0\.0\.0\.0:(\d+)`).FindStringSubmatch(args)
	if !strings.HasPrefix(args, "daemon ") || m == nil {
		t.Fatalf("args %q: want the daemon with its metrics endpoint on every interface", args)
	}
	port := fmt.Sprint(c["ports"].([]any)[0].(map[string]any)["containerPort"])
	ann := dig(ds, "spec", "template", "metadata", "annotations")
	if port != m[1] || ann["prometheus.io/port"] != m[1] || ann["prometheus.io/scrape"] != "true" {
		t.Errorf("metrics on %s, container port %s, scrape annotations %v", m[1], port, ann)
	}
	// The marks that keep a process from being traced by two agents live in
	// the node's /run/lock (the agent's --lock-dir default): mounted from
	// the host, or an agent run on the node would not see the daemon's.
	lockVolume := ""
	for _, vm := range c["volumeMounts"].([]any) {
		if vm := vm.(map[string]any); vm["mountPath"] == "/run/lock" && vm["readOnly"] != true {
			lockVolume = fmt.Sprint(vm["name"])
		}
	}
	hostLocks := false
	for _, vol := range pod["volumes"].([]any) {
		vol := vol.(map[string]any)
		if hp, ok := vol["hostPath"].(map[string]any); ok && vol["name"] == lockVolume && hp["path"] == "/run/lock" {
			hostLocks = true
		}
	}
	if !hostLocks {
		t.Error("the node's /run/lock is not mounted writable at /run/lock: the daemon's marks would be its own")
	}
	ready := dig(c, "readinessProbe", "httpGet")
	if ready["path"] != "/readyz" || ready["port"] != "metrics" {
		t.Errorf("readiness probe %v", ready)
	}
	// The liveness probe asks /healthz (the process is up), not /readyz: a
	// daemon still looking at the node's processes must not be restarted.
	live := dig(c, "livenessProbe", "httpGet")
	if live["path"] != "/healthz" || live["port"] != "metrics" {
		t.Errorf("liveness probe %v, want GET /healthz on the metrics port", live)
	}
	if name := c["ports"].([]any)[0].(map[string]any)["name"]; name != "metrics" {
		t.Errorf("the container port the probes name is %v, want metrics", name)
	}
	if _, ok := dig(c, "resources", "limits")["memory"]; !ok {
		t.Error("no memory limit")
	}
	role := find(t, docs, "ClusterRole")
	rules := role["rules"].([]any)
	if len(rules) != 1 {
		t.Fatalf("role rules %v, want one: reading pods", rules)
	}
	r := rules[0].(map[string]any)
	if !slices.Equal(toStrings(r["resources"]), []string{"pods"}) || !slices.Equal(toStrings(r["verbs"]), []string{"get", "list", "watch"}) {
		t.Errorf("role rule %v, want get, list and watch on pods", r)
	}
	if sa := pod["serviceAccountName"]; sa != find(t, docs, "ServiceAccount")["metadata"].(map[string]any)["name"] {
		t.Errorf("the pods run as %v, not the bound service account", sa)
	}
	cm := find(t, docs, "ConfigMap")
	if _, err := daemon.ParseConfig([]byte(cm["data"].(map[string]any)["daemon.yaml"].(string)), ""); err != nil {
		t.Errorf("the ConfigMap's configuration: %v", err)
	}
}

// TestDockerfileBuild runs the Dockerfile's build command (no container
// engine runs here): it must build the agent as the image ships it.
func TestDockerfileBuild(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*) -o /out/tcagent (\./cmd/tcagent)$`).FindStringSubmatch(string(data))
	if m == nil {
		t.Fatal("no `RUN CGO_ENABLED=0 go build ... -o /out/tcagent ./cmd/tcagent` in the Dockerfile")
	}
	if !strings.Contains(string(data), `ENTRYPOINT ["/usr/local/bin/tcagent"]`) || !strings.Contains(string(data), `CMD ["daemon", "--config", "/etc/tcagent/daemon.yaml"]`) {
		t.Error("the image does not start the daemon on the ConfigMap's file")
	}
	out := filepath.Join(t.TempDir(), "tcagent")
	cmd := exec.Command("sh", "-c", m[1]+" -o "+out+" "+m[2])
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", m[1], err, b)
	}
	if b, err := exec.Command(out, "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(b), "tcagent ") {
		t.Errorf("the built agent: %q, %v", b, err)
	}
}

func find(t *testing.T, docs []map[string]any, kind string) map[string]any {
	t.Helper()
	for _, d := range docs {
		if d["kind"] == kind {
			return d
		}
	}
	t.Fatalf("no %s in the manifest", kind)
	return nil
}

func dig(m map[string]any, path ...string) map[string]any {
	for _, p := range path {
		m, _ = m[p].(map[string]any)
	}
	return m
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, e := range l {
		out = append(out, fmt.Sprint(e))
	}
	return out
}
