package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tcagent/tcagent/daemon"
)

const chart = "helm/tcagent"

// helm returns the helm binary scripts/helm.sh builds from the Go module
// proxy and caches (scripts/test-setup.sh builds it up front).
func helm(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../scripts/helm.sh").Output()
	if err != nil {
		t.Fatalf("scripts/helm.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// custom is a values file unlike the defaults in every value the README
// documents.
const custom = `
createNamespace: true
image: {repository: registry.example/tcagent, tag: "0.2.0", pullPolicy: Always}
metricsPort: 9500
resources:
  requests: {cpu: 100m, memory: 256Mi}
  limits: {memory: 1Gi}
selectors:
  - name: payments
    exe: /app/payments
    builtin: [http, sql]
exporter:
  endpoint: https://otlp.example:4318
  protocol: http/protobuf
  headers: {x-tenant: acme, api-key: secret}
sampler: {name: parentbased_traceidratio, arg: "0.25"}
propagate: {enabled: true}
nodeSelector: {kubernetes.io/os: linux}
tolerations:
  - {key: dedicated, operator: Equal, value: tracing, effect: NoSchedule}
`

// render runs helm template on the chart as release tcagent in namespace
// ns, with the values file values when not empty.
func render(t *testing.T, ns, values string) []map[string]any {
	t.Helper()
	args := []string{"template", "tcagent", chart, "--namespace", ns}
	if values != "" {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte(values), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--values", f)
	}
	out, err := exec.Command(helm(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return documents(t, out)
}

// TestManifestIsTheChart: the committed manifest is the chart rendered
// with its defaults, so that the manifest's tests check the chart too.
func TestManifestIsTheChart(t *testing.T) {
	cmd := exec.Command("./manifest.sh")
	cmd.Env = append(os.Environ(), "HELM="+helm(t))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("deploy/manifest.sh: %v\n%s", err, stderr.String())
	}
	got, err := os.ReadFile("kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("deploy/kubernetes/daemonset.yaml is not the chart's rendering: run `make manifest`")
	}
}

// TestChartLint runs helm lint, strictly, with the default values and
// with custom ones.
func TestChartLint(t *testing.T) {
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{}, {"--values", f}} {
		args = append([]string{"lint", "--strict", chart}, args...)
		if out, err := exec.Command(helm(t), args...).CombinedOutput(); err != nil {
			t.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestChartDefaults renders the chart into a namespace of the user's: no
// Namespace object (helm install --create-namespace makes it), every
// object where the release is and valid, and the manifest's privileges.
func TestChartDefaults(t *testing.T) {
	docs := render(t, "observability", "")
	v := &validator{dir: openAPIDir(t), schemas: map[string]*jsonschema.Schema{}}
	validAndInNamespace(t, v, docs, "observability")
	if slices.ContainsFunc(docs, func(d map[string]any) bool { return d["kind"] == "Namespace" }) {
		t.Error("a Namespace object without createNamespace: helm would own the user's namespace")
	}
	privileges(t, docs, []string{"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"})
}

// TestChartCustom renders every documented value changed and checks that
// each lands where the agent reads it.
func TestChartCustom(t *testing.T) {
	docs := render(t, "tracing", custom)
	v := &validator{dir: openAPIDir(t), schemas: map[string]*jsonschema.Schema{}}
	validAndInNamespace(t, v, docs, "tracing")
	if ns := find(t, docs, "Namespace"); ns["metadata"].(map[string]any)["name"] != "tracing" {
		t.Errorf("namespace %v, want the release's", ns["metadata"])
	}
	// --propagate adds NET_ADMIN to the four and no more.
	privileges(t, docs, []string{"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN"})

	ds := find(t, docs, "DaemonSet")
	pod := dig(ds, "spec", "template", "spec")
	c := pod["containers"].([]any)[0].(map[string]any)
	if c["image"] != "registry.example/tcagent:0.2.0" || c["imagePullPolicy"] != "Always" {
		t.Errorf("image %v %v", c["image"], c["imagePullPolicy"])
	}
	args := toStrings(c["args"])
	if !slices.Contains(args, "--metrics-addr=0.0.0.0:9500") || !slices.Contains(args, "--propagate") ||
		!slices.Contains(args, "--cgroup-root=/host/sys/fs/cgroup") {
		t.Errorf("args %v: want the metrics port, --propagate and --cgroup-root", args)
	}
	// The host's cgroup hierarchy, mounted where --cgroup-root says.
	mounted := false
	for _, vm := range c["volumeMounts"].([]any) {
		vm := vm.(map[string]any)
		if vm["mountPath"] != "/host/sys/fs/cgroup" {
			continue
		}
		for _, vol := range pod["volumes"].([]any) {
			vol := vol.(map[string]any)
			if hp, ok := vol["hostPath"].(map[string]any); ok && vol["name"] == vm["name"] && hp["path"] == "/sys/fs/cgroup" {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Error("the host's /sys/fs/cgroup is not mounted at --cgroup-root")
	}
	env := map[string]string{}
	for _, e := range c["env"].([]any) {
		e := e.(map[string]any)
		if val, ok := e["value"].(string); ok {
			env[e["name"].(string)] = val
		}
	}
	for k, want := range map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example:4318",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_EXPORTER_OTLP_HEADERS":  "api-key=secret,x-tenant=acme",
		"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     "0.25",
	} {
		if env[k] != want {
			t.Errorf("%s=%q, want %q", k, env[k], want)
		}
	}
	if got := dig(c, "resources", "limits")["memory"]; got != "1Gi" {
		t.Errorf("memory limit %v, want 1Gi", got)
	}
	if got := dig(pod, "nodeSelector")["kubernetes.io/os"]; got != "linux" {
		t.Errorf("nodeSelector %v", pod["nodeSelector"])
	}
	tol := pod["tolerations"].([]any)
	if len(tol) != 1 || tol[0].(map[string]any)["key"] != "dedicated" {
		t.Errorf("tolerations %v, want only the custom one", tol)
	}
	cm := find(t, docs, "ConfigMap")
	cfg, err := daemon.ParseConfig([]byte(cm["data"].(map[string]any)["daemon.yaml"].(string)), "")
	if err != nil {
		t.Fatalf("the ConfigMap's configuration: %v", err)
	}
	if len(cfg.Selectors) != 1 || cfg.Selectors[0].Name != "payments" {
		t.Errorf("selectors %+v, want the custom one", cfg.Selectors)
	}
}

// validAndInNamespace validates every object against the Kubernetes
// schemas, and wants each namespaced one, and the role binding's subject,
// in ns.
func validAndInNamespace(t *testing.T, v *validator, docs []map[string]any, ns string) {
	t.Helper()
	for _, doc := range docs {
		md := doc["metadata"].(map[string]any)
		if err := v.validate(doc); err != nil {
			t.Errorf("%s %v: %v", doc["kind"], md["name"], err)
		}
		switch doc["kind"] {
		case "Namespace", "ClusterRole", "ClusterRoleBinding":
		default:
			if md["namespace"] != ns {
				t.Errorf("%s %v in namespace %v, want %s", doc["kind"], md["name"], md["namespace"], ns)
			}
		}
	}
	crb := find(t, docs, "ClusterRoleBinding")
	if s := crb["subjects"].([]any)[0].(map[string]any); s["namespace"] != ns {
		t.Errorf("the role is bound to a service account in %v, want %s", s["namespace"], ns)
	}
}
