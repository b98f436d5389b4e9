package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
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
// node's pods, not the processes seen. It makes that one request itself:
// Kubernetes' Go client would bring its API's every type into the agent
// (its binary twice the size, and about 17 MiB more resident in every
// agent, attached to one process or not).
type KubePods struct {
	cfg  *KubeConfig
	node string

	mu     sync.Mutex
	byUID  map[string]*kubePod
	listed time.Time
	now    func() time.Time // time.Now; a test's clock in tests
}

// KubeConfig says where the Kubernetes API is and how to call it.
type KubeConfig struct {
	// Host is the API server's URL ("https://10.96.0.1:443").
	Host string
	// TokenFile holds the bearer token, read again at every request: the
	// kubelet rotates a pod's service account token. "" sends none.
	TokenFile string
	// Client makes the requests (the cluster's CA trusted); nil: one with
	// the system's roots.
	Client *http.Client
}

// The in-cluster service account, where the kubelet mounts it.
const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount"

// InCluster returns the API's configuration when running in a pod (its
// service account), and false outside a cluster.
func InCluster() (*KubeConfig, bool, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" {
		return nil, false, nil
	}
	if port == "" {
		return nil, false, fmt.Errorf("kubernetes: KUBERNETES_SERVICE_HOST is set but KUBERNETES_SERVICE_PORT is not")
	}
	token := filepath.Join(serviceAccount, "token")
	if _, err := os.Stat(token); err != nil {
		return nil, false, fmt.Errorf("kubernetes: service account token: %w", err)
	}
	ca, err := os.ReadFile(filepath.Join(serviceAccount, "ca.crt"))
	if err != nil {
		return nil, false, fmt.Errorf("kubernetes: service account CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, false, fmt.Errorf("kubernetes: no certificate in %s", filepath.Join(serviceAccount, "ca.crt"))
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, Proxy: http.ProxyFromEnvironment,
	}}
	return &KubeConfig{Host: "https://" + net.JoinHostPort(host, port), TokenFile: token, Client: client}, true, nil
}

// NewKubePods reads the pods of node (all pods when "") through cfg.
func NewKubePods(cfg *KubeConfig, node string) (*KubePods, error) {
	if _, err := url.Parse(cfg.Host); err != nil || cfg.Host == "" {
		return nil, fmt.Errorf("kubernetes client: API server %q: not a URL", cfg.Host)
	}
	return &KubePods{cfg: cfg, node: node, byUID: map[string]*kubePod{}, now: time.Now}, nil
}

// kubePod is what the daemon reads of a pod in the API's JSON (v1.Pod).
type kubePod struct {
	Metadata struct {
		Namespace string            `json:"namespace"`
		Name      string            `json:"name"`
		UID       string            `json:"uid"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Status struct {
		ContainerStatuses          []kubeContainer `json:"containerStatuses"`
		InitContainerStatuses      []kubeContainer `json:"initContainerStatuses"`
		EphemeralContainerStatuses []kubeContainer `json:"ephemeralContainerStatuses"`
	} `json:"status"`
}

type kubeContainer struct {
	Name        string `json:"name"`
	ContainerID string `json:"containerID"`
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
	out := &Pod{Namespace: pod.Metadata.Namespace, Name: pod.Metadata.Name, UID: pod.Metadata.UID, Labels: pod.Metadata.Labels}
	if p.ContainerID != "" {
		for _, set := range [][]kubeContainer{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
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

// maxPodList bounds the pod list read: a node's pods take a few MiB.
const maxPodList = 256 << 20

func (k *KubePods) list(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pods, err := k.get(ctx)
	k.listed = k.now()
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	k.byUID = make(map[string]*kubePod, len(pods))
	for i := range pods {
		k.byUID[pods[i].Metadata.UID] = &pods[i]
	}
	return nil
}

// get lists the node's pods: GET /api/v1/pods, with the node's field
// selector.
func (k *KubePods) get(ctx context.Context) ([]kubePod, error) {
	u := strings.TrimSuffix(k.cfg.Host, "/") + "/api/v1/pods"
	if k.node != "" {
		u += "?" + url.Values{"fieldSelector": {"spec.nodeName=" + k.node}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if k.cfg.TokenFile != "" {
		token, err := os.ReadFile(k.cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("service account token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	client := k.cfg.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	var list struct {
		Items []kubePod `json:"items"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPodList)).Decode(&list); err != nil {
		return nil, fmt.Errorf("decode (at most %d MiB read): %w", maxPodList>>20, err)
	}
	return list.Items, nil
}
