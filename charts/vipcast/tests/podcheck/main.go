// Command podcheck proves that rendered vipcast pods can start with their
// read-only root filesystem: every path vipcast writes (the directories of
// api.socket and api.stateFile) is on a writable volume that the pod's user
// can write, and the configuration is mounted so that updates reach it.
// charts/vipcast/tests/run.sh runs it on the chart's renders and on
// `vipcast manifest static-pod` output.
//
//	podcheck RENDER.yaml                 DaemonSets; the config from the rendered ConfigMap
//	podcheck -config CONFIG.yaml POD.yaml a static pod and the config file it mounts
//
// It prints one line per pod and exits 1 naming every problem.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// vipcast's defaults (speaker/apiserver): what it writes when the config
// does not say.
const (
	defaultSocket    = "/run/vipcast/vipcast.sock"
	defaultStateFile = "/var/lib/vipcast/state.json"
)

func main() {
	configFile := flag.String("config", "", "the static pod's configuration file (for Pods; DaemonSets read the rendered ConfigMap)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: podcheck [-config FILE] RENDER.yaml")
		os.Exit(2)
	}
	data, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "podcheck:", err)
		os.Exit(2)
	}
	var cfgData []byte
	if *configFile != "" {
		if cfgData, err = os.ReadFile(*configFile); err != nil {
			fmt.Fprintln(os.Stderr, "podcheck:", err)
			os.Exit(2)
		}
	}
	n, err := check(os.Stdout, data, cfgData)
	if err == nil && n == 0 {
		err = errors.New("no DaemonSet or Pod in the render")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "podcheck:", err)
		os.Exit(1)
	}
}

type apiConfig struct {
	API struct {
		Socket    *string `json:"socket"`
		StateFile *string `json:"stateFile"`
	} `json:"api"`
}

// check returns the number of pods checked and every problem found.
func check(w io.Writer, render, staticConfig []byte) (int, error) {
	var pods []struct {
		name string
		spec corev1.PodSpec
	}
	configMaps := map[string]string{}
	for _, doc := range bytes.Split(render, []byte("\n---")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return 0, fmt.Errorf("render: %w", err)
		}
		switch meta.Kind {
		case "DaemonSet":
			var ds appsv1.DaemonSet
			if err := yaml.UnmarshalStrict(doc, &ds); err != nil {
				return 0, fmt.Errorf("daemonset: %w", err)
			}
			pods = append(pods, struct {
				name string
				spec corev1.PodSpec
			}{"DaemonSet " + ds.Name, ds.Spec.Template.Spec})
		case "Pod":
			var p corev1.Pod
			if err := yaml.UnmarshalStrict(doc, &p); err != nil {
				return 0, fmt.Errorf("pod: %w", err)
			}
			pods = append(pods, struct {
				name string
				spec corev1.PodSpec
			}{"Pod " + p.Name, p.Spec})
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict(doc, &cm); err != nil {
				return 0, fmt.Errorf("configmap: %w", err)
			}
			for k, v := range cm.Data {
				configMaps[cm.Name+"/"+k] = v
			}
		}
	}
	var errs []error
	for _, p := range pods {
		if err := checkPod(w, p.name, p.spec, configMaps, staticConfig); err != nil {
			errs = append(errs, fmt.Errorf("%s:\n%w", p.name, err))
		}
	}
	return len(pods), errors.Join(errs...)
}

func checkPod(w io.Writer, name string, spec corev1.PodSpec, configMaps map[string]string, staticConfig []byte) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("  "+format, a...)) }
	var c *corev1.Container
	for i := range spec.Containers {
		if spec.Containers[i].Name == "vipcast" {
			c = &spec.Containers[i]
		}
	}
	if c == nil {
		return errors.New("  no container named vipcast")
	}
	uid := int64(-1)
	if spec.SecurityContext != nil && spec.SecurityContext.RunAsUser != nil {
		uid = *spec.SecurityContext.RunAsUser
	}
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		uid = *c.SecurityContext.RunAsUser
	}
	if uid < 0 {
		bad("no runAsUser: the image's USER decides who writes")
	}
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		bad("the root filesystem is not read-only: this check assumes it is")
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}

	// The configuration: where --config points, and what it says.
	var configPath string
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			configPath = v
		}
	}
	if configPath == "" {
		return errors.Join(append(errs, errors.New("  no --config=PATH argument"))...)
	}
	cfgText := staticConfig
	m, _ := mountOf(c.VolumeMounts, configPath)
	switch {
	case m == nil:
		bad("--config=%s is on no mount", configPath)
	case volumes[m.Name].ConfigMap != nil:
		cm := volumes[m.Name].ConfigMap
		if m.SubPath != "" {
			bad("config mount %s uses subPath %q: ConfigMap updates never reach it", m.MountPath, m.SubPath)
		}
		if m.MountPath != path.Dir(configPath) {
			bad("config mount %s is not the directory of --config=%s", m.MountPath, configPath)
		}
		text, ok := configMaps[cm.Name+"/"+path.Base(configPath)]
		if !ok {
			bad("ConfigMap %s has no key %s", cm.Name, path.Base(configPath))
		}
		cfgText = []byte(text)
	case volumes[m.Name].HostPath != nil:
		if staticConfig == nil {
			bad("config from hostPath %s: give -config FILE", volumes[m.Name].HostPath.Path)
		}
	default:
		bad("config mount %s is neither a ConfigMap nor a hostPath", m.MountPath)
	}
	var cfg apiConfig
	if err := yaml.Unmarshal(cfgText, &cfg); err != nil {
		bad("config: %v", err)
	}
	writes := map[string]string{"api.socket": defaultSocket, "api.stateFile": defaultStateFile}
	if cfg.API.Socket != nil {
		writes["api.socket"] = *cfg.API.Socket
	}
	if cfg.API.StateFile != nil {
		writes["api.stateFile"] = *cfg.API.StateFile
	}
	var ok []string
	for _, key := range []string{"api.socket", "api.stateFile"} {
		p := writes[key]
		if p == "" {
			continue // disabled: nothing written
		}
		dir := path.Dir(p)
		m, rel := mountOf(c.VolumeMounts, p)
		if m == nil {
			bad("%s %s: no volume at %s, the read-only root filesystem refuses it", key, p, dir)
			continue
		}
		if m.ReadOnly {
			bad("%s %s: mount %s is read-only", key, p, m.MountPath)
			continue
		}
		if rel != path.Base(p) {
			bad("%s %s: mount %s is not its directory (vipcast does not create %s)", key, p, m.MountPath, dir)
			continue
		}
		vol := volumes[m.Name]
		switch {
		case vol.EmptyDir != nil:
			// 0777: writable by any UID.
			ok = append(ok, fmt.Sprintf("%s on emptyDir %s", key, m.MountPath))
		case vol.HostPath != nil && vol.HostPath.Type != nil:
			t := *vol.HostPath.Type
			if uid == 0 && t != corev1.HostPathDirectoryOrCreate {
				bad("%s %s: hostPath %s of type %q; root mode wants DirectoryOrCreate", key, p, vol.HostPath.Path, t)
				continue
			}
			// The kubelet creates a missing directory root-owned 0755: a
			// non-root UID can only use one made for it beforehand.
			if uid != 0 && t != corev1.HostPathDirectory {
				bad("%s %s: hostPath %s of type %q as UID %d; DirectoryOrCreate would be root's, use an existing Directory or an emptyDir", key, p, vol.HostPath.Path, t, uid)
				continue
			}
			if vol.HostPath.Path != m.MountPath {
				bad("%s %s: from the node's %s, not the same path (vipcast status on the node looks at %s)", key, p, vol.HostPath.Path, m.MountPath)
				continue
			}
			ok = append(ok, fmt.Sprintf("%s on hostPath %s (%s)", key, m.MountPath, t))
		default:
			bad("%s %s: volume %s is neither an emptyDir nor a typed hostPath directory", key, p, m.Name)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	fmt.Fprintf(w, "%s (uid %d): %s\n", name, uid, strings.Join(ok, ", "))
	return nil
}

// mountOf returns the mount holding p (the deepest one) and p relative to it.
func mountOf(ms []corev1.VolumeMount, p string) (*corev1.VolumeMount, string) {
	var best *corev1.VolumeMount
	var rel string
	for i := range ms {
		mp := path.Clean(ms[i].MountPath)
		r, ok := strings.CutPrefix(p, mp+"/")
		if mp == p {
			r, ok = "", true
		}
		if ok && (best == nil || len(mp) > len(path.Clean(best.MountPath))) {
			best, rel = &ms[i], r
		}
	}
	return best, rel
}
