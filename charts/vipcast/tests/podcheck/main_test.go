package main

import (
	"io"
	"strings"
	"testing"
)

const configMap = `apiVersion: v1
kind: ConfigMap
metadata: {name: vipcast}
data:
  config.yaml: |
    vips: [203.0.113.10/32]
---
`

// pod renders a DaemonSet with the given container args, mounts and volumes.
func pod(uid, args, mounts, volumes string) string {
	return configMap + `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: vipcast}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      securityContext: {runAsUser: ` + uid + `}
      containers:
        - name: vipcast
          args: [run, ` + args + `]
          securityContext: {readOnlyRootFilesystem: true}
          volumeMounts:` + mounts + `
      volumes:` + volumes + "\n"
}

const (
	dirMounts = `
            - {name: config, mountPath: /etc/vipcast/config, readOnly: true}
            - {name: run, mountPath: /run/vipcast}
            - {name: state, mountPath: /var/lib/vipcast}`
	cmVolume   = "\n        - {name: config, configMap: {name: vipcast}}"
	hostCreate = cmVolume + `
        - {name: run, hostPath: {path: /run/vipcast, type: DirectoryOrCreate}}
        - {name: state, hostPath: {path: /var/lib/vipcast, type: DirectoryOrCreate}}`
	emptyDirs = cmVolume + `
        - {name: run, emptyDir: {}}
        - {name: state, emptyDir: {}}`
)

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		name   string
		render string
		want   []string // problems; none: the pod passes
	}{
		{"root on node dirs", pod("0", "--config=/etc/vipcast/config/config.yaml", dirMounts, hostCreate), nil},
		{"non-root on emptyDirs", pod("65532", "--config=/etc/vipcast/config/config.yaml", dirMounts, emptyDirs), nil},
		{"before the fix: subPath, nothing writable", pod("0", "--config=/etc/vipcast/config.yaml",
			"\n            - {name: config, mountPath: /etc/vipcast/config.yaml, subPath: config.yaml, readOnly: true}", cmVolume),
			[]string{`uses subPath "config.yaml"`, "api.socket /run/vipcast/vipcast.sock: no volume at /run/vipcast", "api.stateFile /var/lib/vipcast/state.json: no volume"}},
		{"non-root on dirs the kubelet creates root's", pod("65532", "--config=/etc/vipcast/config/config.yaml", dirMounts, hostCreate),
			[]string{`hostPath /run/vipcast of type "DirectoryOrCreate" as UID 65532`, `hostPath /var/lib/vipcast of type "DirectoryOrCreate" as UID 65532`}},
		{"read-only state mount", pod("0", "--config=/etc/vipcast/config/config.yaml",
			strings.Replace(dirMounts, "mountPath: /var/lib/vipcast}", "mountPath: /var/lib/vipcast, readOnly: true}", 1), hostCreate),
			[]string{"mount /var/lib/vipcast is read-only"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, err := check(io.Discard, []byte(tt.render), nil)
			if n != 1 {
				t.Fatalf("checked %d pods, want 1 (err %v)", n, err)
			}
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected problems:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("passed; want problems %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems lack %q:\n%v", w, err)
				}
			}
		})
	}
}
