package daemon

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
)

// Pod is what the daemon knows of a process's pod.
type Pod struct {
	Namespace, Name, UID string
	Labels               map[string]string
	// Container is the name of the process's container in the pod ("" when
	// its id is not in the pod's status yet).
	Container string
}

// Pods finds a process's pod, in a cluster.
type Pods interface {
	// Pod returns the pod of p, nil when it runs in none (or none is
	// known).
	Pod(ctx context.Context, p *Process) (*Pod, error)
}

// KubePods reads the pods of one node from the Kubernetes API: a list of
// the node's pods, kept by uid and listed again when a process names a pod
// the list lacks (at most once a second), so that memory follows the
// node's pods, not the processes seen.
type KubePods struct {
	client corev1client.PodsGetter
	node   string

	mu     sync.Mutex
	byUID  map[string]*corev1.Pod
	listed time.Time
	now    func() time.Time // time.Now; a test's clock in tests
}

// InCluster returns the API's configuration when running in a pod (its
// service account), and false outside a cluster.
func InCluster() (*rest.Config, bool, error) {
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return nil, false, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, false, fmt.Errorf("kubernetes: %w", err)
	}
	return cfg, true, nil
}

// NewKubePods reads the pods of node (all pods when "") through cfg.
func NewKubePods(cfg *rest.Config, node string) (*KubePods, error) {
	c, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &KubePods{client: c, node: node, byUID: map[string]*corev1.Pod{}, now: time.Now}, nil
}

// Pod implements Pods.
func (k *KubePods) Pod(ctx context.Context, p *Process) (*Pod, error) {
	if p.PodUID == "" {
		return nil, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	pod := k.byUID[p.PodUID]
	if pod == nil && k.now().Sub(k.listed) >= time.Second {
		if err := k.list(ctx); err != nil {
			return nil, err
		}
		pod = k.byUID[p.PodUID]
	}
	if pod == nil {
		return nil, nil
	}
	out := &Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), Labels: pod.Labels}
	if p.ContainerID != "" {
		for _, set := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
			for _, cs := range set {
				// "containerd://<id>", "cri-o://<id>", "docker://<id>"
				if _, id, ok := strings.Cut(cs.ContainerID, "://"); ok && id == p.ContainerID {
					out.Container = cs.Name
				}
			}
		}
	}
	return out, nil
}

func (k *KubePods) list(ctx context.Context) error {
	opts := metav1.ListOptions{}
	if k.node != "" {
		opts.FieldSelector = "spec.nodeName=" + k.node
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := k.client.Pods("").List(ctx, opts)
	k.listed = k.now()
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	k.byUID = make(map[string]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		k.byUID[string(list.Items[i].UID)] = &list.Items[i]
	}
	return nil
}
