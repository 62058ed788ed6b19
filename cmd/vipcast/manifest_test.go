package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vipcast/vipcast/speaker/apiserver"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// runStaticPod runs "manifest static-pod" on testdata/manifest/NAME.yaml.
// The config's files (CA, token, MD5 keys) are created in a temporary
// directory written @DIR@ in the input and /TMP in the output; the first
// line "# args: ..." holds the extra flags.
func runStaticPod(t *testing.T, name string) (code int, stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"pki/ca.crt", "token", "md5/router1", "md5/router2"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("s3cret-"+filepath.Base(f)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	in, err := os.ReadFile(filepath.Join("testdata", "manifest", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(in), "\n")
	args := strings.Fields(strings.TrimPrefix(first, "# args:"))
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, bytes.ReplaceAll(in, []byte("@DIR@"), []byte(dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir) // relative paths in the config resolve here

	var out, errOut bytes.Buffer
	cmd := newManifestCmd()
	cmd.SetArgs(append([]string{"static-pod", "--config", cfg}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); err != nil {
		var ee exitError
		if !errors.As(err, &ee) {
			t.Fatalf("unexpected error: %v", err)
		}
		code = ee.code
	}
	clean := func(s string) string { return strings.ReplaceAll(s, dir, "/TMP") }
	return code, clean(out.String()), clean(errOut.String())
}

// TestStaticPodGolden compares the whole output of each case with
// testdata/manifest/NAME.golden. Run with -update to rewrite.
func TestStaticPodGolden(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "manifest", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no test cases in testdata/manifest")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			golden, err := filepath.Abs(filepath.Join("testdata", "manifest", name+".golden"))
			if err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runStaticPod(t, name) // changes directory
			got := fmt.Sprintf("exit %d\n--- stderr\n%s--- stdout\n%s", code, stderr, stdout)
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if d := cmp.Diff(string(want), got); d != "" {
				t.Errorf("output differs from %s (-want +got):\n%s", golden, d)
			}
		})
	}
}

// TestStaticPodProperties decodes the manifests strictly as Pods and checks
// what the bootstrap depends on, independently of the golden text.
func TestStaticPodProperties(t *testing.T) {
	for _, tt := range []struct {
		name        string
		nonRoot     bool
		grace       int64
		caps        []corev1.Capability
		probes      bool
		configHost  string
		hostFiles   []string
		writable    map[string]string // mount path -> volume kind
		writes      []string          // api.socket, api.stateFile if not the defaults
		description string
	}{
		{name: "minimal", grace: 12, caps: []corev1.Capability{"NET_ADMIN"}, configHost: "/etc/vipcast/config.yaml",
			hostFiles: []string{"/TMP/pki/ca.crt"},
			writable:  map[string]string{"/run/vipcast": "hostPath DirectoryOrCreate", "/var/lib/vipcast": "hostPath DirectoryOrCreate"}},
		{name: "full", nonRoot: true, grace: 12, caps: []corev1.Capability{"NET_ADMIN", "NET_BIND_SERVICE"}, probes: true,
			configHost: "/etc/vipcast/vipcast.yaml", hostFiles: []string{"/TMP/pki/ca.crt", "/TMP/token", "/TMP/md5/router1", "/TMP/md5/router2"},
			writable: map[string]string{"/run/vipcast": "emptyDir", "/var/lib/vipcast": "emptyDir"}},
		{name: "nonroot-host-dirs", nonRoot: true, grace: 12, caps: []corev1.Capability{"NET_ADMIN"}, configHost: "/etc/vipcast/config.yaml",
			hostFiles: []string{"/TMP/pki/ca.crt"},
			writable:  map[string]string{"/run/vipcast-api": "hostPath Directory"},
			writes:    []string{"/run/vipcast-api/vipcast.sock", "/run/vipcast-api/state.json"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runStaticPod(t, tt.name)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var pod corev1.Pod
			if err := yaml.UnmarshalStrict([]byte(stdout), &pod); err != nil {
				t.Fatalf("not a valid Pod: %v", err)
			}
			s := pod.Spec
			if pod.Namespace != "kube-system" || !s.HostNetwork || s.ServiceAccountName != "" ||
				s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
				t.Errorf("want kube-system, hostNetwork, no service account token; got ns=%q hostNetwork=%v sa=%q automount=%v",
					pod.Namespace, s.HostNetwork, s.ServiceAccountName, s.AutomountServiceAccountToken)
			}
			if *s.TerminationGracePeriodSeconds != tt.grace {
				t.Errorf("terminationGracePeriodSeconds = %d, want %d", *s.TerminationGracePeriodSeconds, tt.grace)
			}
			c := s.Containers[0]
			sc := c.SecurityContext
			if d := cmp.Diff(tt.caps, sc.Capabilities.Add); d != "" || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
				t.Errorf("capabilities: drop %v, add %v; want drop [ALL], add %v", sc.Capabilities.Drop, sc.Capabilities.Add, tt.caps)
			}
			if !*sc.ReadOnlyRootFilesystem || *sc.Privileged {
				t.Error("want a read-only root filesystem and not privileged")
			}
			// Root: no_new_privs on. Non-root: file capabilities need it off.
			if *sc.AllowPrivilegeEscalation != tt.nonRoot || *s.SecurityContext.RunAsNonRoot != tt.nonRoot {
				t.Errorf("nonRoot %v: allowPrivilegeEscalation=%v runAsNonRoot=%v", tt.nonRoot, *sc.AllowPrivilegeEscalation, *s.SecurityContext.RunAsNonRoot)
			}
			if s.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Error("want seccomp RuntimeDefault")
			}
			if (c.LivenessProbe != nil) != tt.probes || (c.ReadinessProbe != nil) != tt.probes {
				t.Errorf("probes: liveness %v readiness %v, want %v", c.LivenessProbe != nil, c.ReadinessProbe != nil, tt.probes)
			}
			// Every path vipcast writes is on a writable volume; all else
			// is a read-only file from the node.
			volumes := map[string]corev1.Volume{}
			for _, v := range s.Volumes {
				volumes[v.Name] = v
			}
			var hostPaths []string
			writable := map[string]string{}
			for _, m := range c.VolumeMounts {
				v := volumes[m.Name]
				switch {
				case !m.ReadOnly && v.HostPath != nil && v.HostPath.Type != nil:
					writable[m.MountPath] = "hostPath " + string(*v.HostPath.Type)
					if v.HostPath.Path != m.MountPath {
						t.Errorf("mount %s from the node's %s, want the same path (vipcast status on the node)", m.MountPath, v.HostPath.Path)
					}
				case !m.ReadOnly && v.EmptyDir != nil:
					writable[m.MountPath] = "emptyDir"
				case m.ReadOnly && v.HostPath != nil && v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathFile:
					hostPaths = append(hostPaths, v.HostPath.Path)
				default:
					t.Errorf("mount %s (readOnly %v) of volume %+v: neither a read-only file nor a writable directory", m.MountPath, m.ReadOnly, v)
				}
			}
			if len(volumes) != len(c.VolumeMounts) {
				t.Errorf("%d volumes for %d mounts", len(volumes), len(c.VolumeMounts))
			}
			if d := cmp.Diff(append([]string{tt.configHost}, tt.hostFiles...), hostPaths); d != "" {
				t.Errorf("read-only hostPath files (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.writable, writable); d != "" {
				t.Errorf("writable mounts (-want +got):\n%s", d)
			}
			writes := []string{apiserver.DefaultSocket, apiserver.DefaultStateFile}
			if tt.writes != nil {
				writes = tt.writes
			}
			for _, f := range writes {
				if _, ok := writable[filepath.Dir(f)]; !ok {
					t.Errorf("vipcast writes %s but its directory is not a writable mount: %v", f, writable)
				}
			}
		})
	}
}
