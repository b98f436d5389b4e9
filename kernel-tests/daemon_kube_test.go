package kerneltests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/daemon"
)

// kubeSlice makes a cgroup v2 directory to hold the test's pods, removed
// with everything beneath it at the test's end.
func kubeSlice(t *testing.T) string {
	t.Helper()
	root, err := bpf.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	slice := filepath.Join(root, "tcagent-test-kubepods.slice")
	if err := os.MkdirAll(slice, 0o755); err != nil {
		t.Fatalf("make a cgroup: %v", err)
	}
	t.Cleanup(func() {
		var dirs []string
		filepath.WalkDir(slice, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		// The deepest first; a cgroup whose processes are still leaving
		// is busy for a moment.
		for i := len(dirs) - 1; i >= 0; i-- {
			for try := 0; os.Remove(dirs[i]) != nil && try < 50; try++ {
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
	return slice
}

// podCgroup makes, in slice, a cgroup laid out as the kubelet's systemd
// driver lays out a container's.
func podCgroup(t *testing.T, slice, podUID, containerID string) string {
	t.Helper()
	dir := filepath.Join(slice, "kubepods-besteffort-pod"+strings.ReplaceAll(podUID, "-", "_")+".slice", "cri-containerd-"+containerID+".scope")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("make a cgroup: %v", err)
	}
	return dir
}

// startIn starts bin in cgroup dir from its first instruction on: a shell
// moves itself there, then execs bin.
func startIn(t *testing.T, dir, bin string, args ...string) *exec.Cmd {
	t.Helper()
	return startProc(t, "sh", append([]string{"-c", `echo $$ > "$0"/cgroup.procs && exec "$@"`, dir, bin}, args...)...)
}

// TestDaemonKubernetes: processes in pods, found by their cgroups, named by
// an API server that answers as Kubernetes' does. A selector by namespace,
// labels and container name takes the process in that container, with the
// pod's resource attributes; a selector by container id takes another,
// whose pod the API does not know; a process in neither is left alone.
func TestDaemonKubernetes(t *testing.T) {
	dir := t.TempDir()
	binA, _ := churnBinaries(t, dir)
	os.WriteFile(filepath.Join(dir, "probes.yaml"), []byte(churnProbes), 0o644)
	cart := strings.Repeat("ab", 32)
	other := strings.Repeat("cd", 32)
	sidecar := strings.Repeat("ef", 32)
	cartPod := "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Items: []corev1.Pod{{
			ObjectMeta: metav1.ObjectMeta{Name: "cart-7d9f", Namespace: "shop", UID: types.UID(cartPod), Labels: map[string]string{"app": "cart"}},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
				{Name: "cart", ContainerID: "containerd://" + cart},
				{Name: "sidecar", ContainerID: "containerd://" + sidecar},
			}},
		}}}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(list)
	}))
	defer srv.Close()
	pods, err := daemon.NewKubePods(&daemon.KubeConfig{Host: srv.URL}, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := daemon.ParseConfig([]byte(fmt.Sprintf(`selectors:
  - kubernetes: {namespace: shop, pod_labels: {app: cart}, container: cart}
    exe: %[1]s/churn-*
    probes: probes.yaml
    builtin: [none]
  - container_id: %[2]s
    probes: probes.yaml
    builtin: [none]
`, dir, other[:12])), dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := &pidSpans{seen: map[int64]*pidSeen{}}
	d := daemon.New(daemon.Options{Config: cfg, Self: os.Getpid(), Pods: pods, Base: agent.Config{SessionConfig: agent.SessionConfig{Processor: rec}, ImageConfig: agent.ImageConfig{PollInterval: 10 * time.Millisecond}}})
	runDaemon(t, d)

	slice := kubeSlice(t)
	inCart := startIn(t, podCgroup(t, slice, cartPod, cart), binA, "--tag", "cart")
	inOther := startIn(t, podCgroup(t, slice, "00000000-0000-0000-0000-000000000001", other), binA, "--tag", "other")
	inSidecar := startIn(t, podCgroup(t, slice, cartPod, sidecar), binA, "--tag", "sidecar")
	waitFor(t, "the cart container's process traced", func() bool { return rec.get(inCart.Process.Pid).work > 0 })
	waitFor(t, "the other container's process traced", func() bool { return rec.get(inOther.Process.Pid).work > 0 })
	res := rec.get(inCart.Process.Pid).res
	for k, v := range map[string]string{"k8s.namespace.name": "shop", "k8s.pod.name": "cart-7d9f", "k8s.pod.uid": cartPod,
		"k8s.container.name": "cart", "container.id": cart, "service.name": "cart"} {
		if res[k] != v {
			t.Errorf("cart process: %s = %q, want %q (resource %v)", k, res[k], v, res)
		}
	}
	if res := rec.get(inOther.Process.Pid).res; res["container.id"] != other || res["k8s.pod.name"] != "" || res["service.name"] != "churn-a" {
		t.Errorf("the process of a pod the API does not know: resource %v", res)
	}
	time.Sleep(time.Second)
	if got := rec.get(inSidecar.Process.Pid); got.work != 0 {
		t.Errorf("the sidecar container's process (container name sidecar) was traced: %+v", got)
	}
	for _, c := range []*exec.Cmd{inCart, inOther, inSidecar} {
		stopProc(c)
	}
}
