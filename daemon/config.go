// Package daemon is tcagent's host-wide mode: it finds the processes that
// match a configuration's selectors as they start (discover), traces each
// with the probes its selector names, with one set of BPF programs and
// maps for the host (agent.Node) and one set of uprobes shared among the
// processes of one executable (agent.Image), and lets each go when it
// exits.
package daemon

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/tcagent/tcagent/internal/strictyaml"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// Config is the daemon's configuration file.
type Config struct {
	Selectors []Selector `yaml:"selectors"`
}

// Selector picks processes, and says how to trace them. Every criterion
// given must hold; a process takes the first selector it matches.
type Selector struct {
	// Name labels the selector in logs (default: its position).
	Name string `yaml:"name"`
	// Exe is a glob (path.Match) on the executable's absolute path.
	Exe string `yaml:"exe"`
	// ProcessName is a glob on the executable's base name.
	ProcessName string `yaml:"process_name"`
	// Cmdline is a regular expression searched in the command line, its
	// arguments joined by spaces.
	Cmdline string `yaml:"cmdline"`
	// Port is a TCP port the process listens on. A process that does not
	// listen yet is checked again until it does.
	Port int `yaml:"port"`
	// ContainerID is a container id, or a prefix of one (at least 12
	// characters, as `docker ps` and `crictl ps` print them).
	ContainerID string `yaml:"container_id"`
	// Cgroup is a glob on the process's cgroup v2 path.
	Cgroup     string      `yaml:"cgroup"`
	Kubernetes *Kubernetes `yaml:"kubernetes"`

	// Probes is a custom probe file (relative to the configuration file).
	Probes string `yaml:"probes"`
	// Builtin lists the built-in sets; absent: all that apply; [none]:
	// none.
	Builtin []string `yaml:"builtin"`
	// ServiceName sets service.name (default: OTEL_SERVICE_NAME, else the
	// Kubernetes container's name, else the executable's base name).
	ServiceName string `yaml:"service_name"`

	cmdline *regexp.Regexp
	specs   []probes.Spec
}

// Kubernetes selects by the process's pod (found from its cgroup).
type Kubernetes struct {
	Namespace string            `yaml:"namespace"`
	PodLabels map[string]string `yaml:"pod_labels"`
	// Container is the container's name in the pod.
	Container string `yaml:"container"`
}

// LoadConfig reads and checks the configuration file, and the probe files
// it names.
func LoadConfig(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("daemon config: %w", err)
	}
	cfg, err := ParseConfig(data, filepath.Dir(file))
	if le := (*strictyaml.Error)(nil); errors.As(err, &le) {
		return nil, fmt.Errorf("%s line %d: %s", file, le.Line, le.Msg)
	}
	if err != nil {
		return nil, fmt.Errorf("daemon config %s: %w", file, err)
	}
	return cfg, nil
}

// ParseConfig parses a configuration; probe files are relative to dir.
func ParseConfig(data []byte, dir string) (*Config, error) {
	var cfg Config
	if err := strictyaml.Decode(data, &cfg, strictyaml.Names{"selectors": "name"}); err != nil {
		if errors.Is(err, strictyaml.ErrEmpty) {
			return nil, errors.New("empty: want selectors")
		}
		return nil, err
	}
	if len(cfg.Selectors) == 0 {
		return nil, errors.New("no selectors")
	}
	for i := range cfg.Selectors {
		s := &cfg.Selectors[i]
		label := fmt.Sprintf("selector %q", s.Name)
		if s.Name == "" {
			s.Name = fmt.Sprintf("selector %d", i+1)
			label = s.Name
		}
		if err := s.compile(dir); err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
	}
	return &cfg, nil
}

func (s *Selector) compile(dir string) error {
	k := s.Kubernetes
	if s.Exe == "" && s.ProcessName == "" && s.Cmdline == "" && s.Port == 0 && s.ContainerID == "" && s.Cgroup == "" &&
		(k == nil || k.Namespace == "" && len(k.PodLabels) == 0 && k.Container == "") {
		return errors.New("no criterion: give exe, process_name, cmdline, port, container_id, cgroup or kubernetes")
	}
	for _, g := range []struct{ key, glob string }{{"exe", s.Exe}, {"process_name", s.ProcessName}, {"cgroup", s.Cgroup}} {
		if _, err := path.Match(g.glob, ""); err != nil {
			return fmt.Errorf("%s %q: %w", g.key, g.glob, err)
		}
	}
	if s.Exe != "" && !strings.HasPrefix(s.Exe, "/") && !strings.HasPrefix(s.Exe, "*") {
		return fmt.Errorf("exe %q: want an absolute path (a glob)", s.Exe)
	}
	if s.Cmdline != "" {
		re, err := regexp.Compile(s.Cmdline)
		if err != nil {
			return fmt.Errorf("cmdline: %w", err)
		}
		s.cmdline = re
	}
	if s.Port < 0 || s.Port > 65535 {
		return fmt.Errorf("port %d: want 1 to 65535", s.Port)
	}
	if id := s.ContainerID; id != "" && (len(id) < 12 || strings.Trim(id, "0123456789abcdef") != "") {
		return fmt.Errorf("container_id %q: want 12 to 64 lowercase hex digits", id)
	}
	for _, b := range s.Builtin {
		if b == "none" {
			if len(s.Builtin) > 1 {
				return errors.New("builtin: none stands alone")
			}
			continue
		}
		known := false
		for _, k := range builtin.Sets {
			known = known || k == b
		}
		if !known {
			return fmt.Errorf("builtin %q: want one of %s, or none", b, strings.Join(builtin.Sets, ", "))
		}
	}
	if s.Probes != "" {
		file := s.Probes
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		specs, err := probes.Load(file)
		if err != nil {
			return err
		}
		s.specs = specs
	}
	if s.Probes == "" && len(s.Builtin) == 1 && s.Builtin[0] == "none" {
		return errors.New("nothing to trace: give probes, or leave built-in sets on")
	}
	return nil
}

// Defaults gives the selectors that do not say their own the command
// line's probes, built-in sets (nil: all) and service name.
func (c *Config) Defaults(specs []probes.Spec, builtin []string, serviceName string) {
	for i := range c.Selectors {
		s := &c.Selectors[i]
		if s.Probes == "" && s.specs == nil {
			s.specs = specs
		}
		if s.Builtin == nil && builtin != nil {
			s.Builtin = builtin
			if len(builtin) == 0 {
				s.Builtin = []string{"none"}
			}
		}
		if s.ServiceName == "" {
			s.ServiceName = serviceName
		}
	}
}

// BuiltinSets is the selector's built-in sets as agent.ImageConfig wants them:
// nil for all, empty for none.
func (s *Selector) BuiltinSets() []string {
	if s.Builtin == nil {
		return nil
	}
	if len(s.Builtin) == 1 && s.Builtin[0] == "none" {
		return []string{}
	}
	return s.Builtin
}

// Specs returns the selector's custom probes.
func (s *Selector) Specs() []probes.Spec { return s.specs }

// needsKube reports whether the selector needs the pod's metadata.
func (s *Selector) needsKube() bool { return s.Kubernetes != nil }

// match reports whether the process matches every criterion but the
// port, and whether it matches the port too.
func (s *Selector) match(p *Process, pod *Pod) (others, port bool) {
	if s.Exe != "" {
		if ok, _ := path.Match(s.Exe, p.Exe); !ok {
			return false, false
		}
	}
	if s.ProcessName != "" {
		if ok, _ := path.Match(s.ProcessName, path.Base(p.Exe)); !ok {
			return false, false
		}
	}
	if s.cmdline != nil && !s.cmdline.MatchString(p.Cmdline) {
		return false, false
	}
	if s.ContainerID != "" && (p.ContainerID == "" || !strings.HasPrefix(p.ContainerID, s.ContainerID)) {
		return false, false
	}
	if s.Cgroup != "" {
		if ok, _ := path.Match(s.Cgroup, p.Cgroup); !ok {
			return false, false
		}
	}
	if k := s.Kubernetes; k != nil {
		if pod == nil || k.Namespace != "" && pod.Namespace != k.Namespace || k.Container != "" && pod.Container != k.Container {
			return false, false
		}
		for key, v := range k.PodLabels {
			if got, ok := pod.Labels[key]; !ok || got != v {
				return false, false
			}
		}
	}
	if s.Port == 0 {
		return true, true
	}
	return true, p.listens(s.Port)
}
