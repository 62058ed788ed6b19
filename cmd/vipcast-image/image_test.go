package main

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

const testRef = "ghcr.io/vipcast/vipcast:v9.8.7"

// `setcap cap_net_admin+ep` on a file, read back with `getfattr -n
// security.capability -e hex`: v2 magic with the effective flag, permitted
// bit 12.
const wantCapHex = "0100000200100000000000000000000000000000"

// build runs vipcast-image as make image does and returns the tarball's path
// and what it printed.
func build(t *testing.T, bin []byte, epoch string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	binPath := filepath.Join(dir, "vipcast")
	if err := os.WriteFile(binPath, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "vipcast-image.tar")
	t.Setenv("SOURCE_DATE_EPOCH", epoch)
	var stdout, stderr bytes.Buffer
	err := run([]string{"-binary", binPath, "-image", testRef, "-o", out, "-version", "v9.8.7",
		"-revision", "0123456789abcdef0123456789abcdef01234567", "-arch", "amd64"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("vipcast-image: %v\n%s", err, stderr.String())
	}
	return out, stdout.String()
}

func TestImage(t *testing.T) {
	bin := []byte("\x7fELF not really vipcast")
	archive, printed := build(t, bin, "1700000000")
	created := time.Unix(1700000000, 0).UTC()

	// The archive itself: OCI layout + manifest.json, sorted, fixed dates.
	dir := t.TempDir()
	names := untar(t, archive, dir, created)
	for _, want := range []string{"oci-layout", "index.json", "manifest.json"} {
		if !slices.Contains(names, want) {
			t.Errorf("archive lacks %s: %v", want, names)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("archive entries not sorted: %v", names)
	}

	// OCI side, as containerd reads it.
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index.json has %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if diff := cmp.Diff(map[string]string{"io.containerd.image.name": testRef, "org.opencontainers.image.ref.name": "v9.8.7"}, desc.Annotations); diff != "" {
		t.Errorf("index.json annotations (-want +got):\n%s", diff)
	}
	if desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want %s", desc.MediaType, types.OCIManifestSchema1)
	}
	if !strings.Contains(printed, desc.Digest.String()) {
		t.Errorf("printed %q, not the digest %s", printed, desc.Digest)
	}
	img, err := p.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Time.Equal(created) {
		t.Errorf("config os/arch/created = %s/%s/%s, want linux/amd64/%s", cf.OS, cf.Architecture, cf.Created.Time, created)
	}
	wantCfg := v1.Config{
		Entrypoint: []string{"/usr/local/bin/vipcast"},
		Cmd:        []string{"run", "--config=/etc/vipcast/config/config.yaml"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		User:       "65532:65532",
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
			"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
			"org.opencontainers.image.source":   "https://github.com/vipcast/vipcast",
			"org.opencontainers.image.title":    "vipcast",
			"org.opencontainers.image.version":  "v9.8.7",
		},
	}
	if diff := cmp.Diff(wantCfg, cf.Config); diff != "" {
		t.Errorf("image config (-want +got):\n%s", diff)
	}

	// The layer: the root filesystem.
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want 1", len(layers), err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s, want %s", mt, types.OCILayer)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	type file struct {
		Mode     int64
		UID, GID int
		Content  string
	}
	got := map[string]file{}
	var order []string
	var capHex string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(created) {
			t.Errorf("%s: mtime %s, want SOURCE_DATE_EPOCH %s", h.Name, h.ModTime, created)
		}
		data, _ := io.ReadAll(tr)
		f := file{Mode: h.Mode, UID: h.Uid, GID: h.Gid}
		if h.Name == "etc/passwd" || h.Name == "etc/group" || h.Name == "usr/local/bin/vipcast" {
			f.Content = string(data)
		}
		got[h.Name] = f
		order = append(order, h.Name)
		if h.Name == "usr/local/bin/vipcast" {
			capHex = hex.EncodeToString([]byte(h.PAXRecords["SCHILY.xattr.security.capability"]))
		}
	}
	if !slices.IsSorted(order) {
		t.Errorf("layer entries not sorted: %v", order)
	}
	want := map[string]file{
		"etc/":                  {Mode: 0o755},
		"etc/group":             {Mode: 0o644, Content: "root:x:0:\nnonroot:x:65532:\n"},
		"etc/passwd":            {Mode: 0o644, Content: "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
		"home/":                 {Mode: 0o755},
		"home/nonroot/":         {Mode: 0o700, UID: 65532, GID: 65532},
		"run/":                  {Mode: 0o755},
		"run/vipcast/":          {Mode: 0o755, UID: 65532, GID: 65532},
		"tmp/":                  {Mode: 0o1777},
		"usr/":                  {Mode: 0o755},
		"usr/local/":            {Mode: 0o755},
		"usr/local/bin/":        {Mode: 0o755},
		"usr/local/bin/vipcast": {Mode: 0o755, Content: string(bin)},
		"var/":                  {Mode: 0o755},
		"var/lib/":              {Mode: 0o755},
		"var/lib/vipcast/":      {Mode: 0o755, UID: 65532, GID: 65532},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layer files (-want +got):\n%s", diff)
	}
	if capHex != wantCapHex {
		t.Errorf("usr/local/bin/vipcast security.capability = %q, want %q (cap_net_admin+ep)", capHex, wantCapHex)
	}

	// Docker side: manifest.json, as `docker load` reads it, names the same
	// config and layer blobs.
	tag, err := name.NewTag(testRef)
	if err != nil {
		t.Fatal(err)
	}
	dimg, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	for _, c := range []struct {
		what   string
		docker func() (v1.Hash, error)
		oci    func() (v1.Hash, error)
	}{
		{"config", dimg.ConfigName, img.ConfigName},
		{"layer", func() (v1.Hash, error) { l, _ := dimg.Layers(); return l[0].DiffID() }, layers[0].DiffID},
	} {
		d, err1 := c.docker()
		o, err2 := c.oci()
		if err1 != nil || err2 != nil || d != o {
			t.Errorf("%s: manifest.json has %s (%v), index.json %s (%v)", c.what, d, err1, o, err2)
		}
	}
}

// untar extracts archive into dir, checking every entry's date, and returns
// the entry names in archive order.
func untar(t *testing.T, archive, dir string, mtime time.Time) []string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(mtime) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("archive %s: mtime %s uid %d gid %d, want %s 0 0", h.Name, h.ModTime, h.Uid, h.Gid, mtime)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestImageReproducible(t *testing.T) {
	sum := func(bin, epoch string) (string, []byte) {
		archive, printed := build(t, []byte(bin), epoch)
		data, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(printed)[2], data
	}
	d1, a1 := sum("vipcast binary A", "1700000000")
	d2, a2 := sum("vipcast binary A", "1700000000")
	if d1 != d2 || !bytes.Equal(a1, a2) {
		t.Errorf("same binary, two builds: digests %s and %s, tarballs equal: %v", d1, d2, bytes.Equal(a1, a2))
	}
	// The digest does depend on its inputs (else the check above proves nothing).
	if d3, _ := sum("vipcast binary B", "1700000000"); d3 == d1 {
		t.Errorf("another binary gives the same digest %s", d3)
	}
	if d4, _ := sum("vipcast binary A", "1700000001"); d4 == d1 {
		t.Errorf("another SOURCE_DATE_EPOCH gives the same digest %s", d4)
	}
}

func TestSourceDateEpoch(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"", 0, false},
		{"1700000000", 1700000000, false},
		{"-1", 0, true},
		{"2023-11-14", 0, true},
	} {
		got, err := sourceDateEpoch(c.in)
		if (err != nil) != c.wantErr || (err == nil && got.Unix() != c.want) {
			t.Errorf("sourceDateEpoch(%q) = %v, %v; want %d, error %v", c.in, got, err, c.want, c.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
			t.Errorf("error %q does not name SOURCE_DATE_EPOCH", err)
		}
	}
}

// TestWriteRootfs: -rootfs (the Dockerfile's way) lays out the same files,
// modes, owners and capability as the layer of make image. Needs root.
func TestWriteRootfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown and the security.capability xattr")
	}
	bin := []byte("vipcast binary")
	dir := t.TempDir()
	if err := WriteRootfs(dir, bin); err != nil {
		t.Fatal(err)
	}
	type file struct {
		Mode     fs.FileMode
		UID, GID uint32
	}
	got := map[string]file{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(dir, p)
		got[filepath.ToSlash(rel)] = file{fi.Mode(), st.Uid, st.Gid}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]file{}
	for _, e := range rootfs(bin) {
		m := fileMode(e.mode)
		if e.dir {
			m |= fs.ModeDir
		}
		want[e.name] = file{m, uint32(e.uid), uint32(e.gid)}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rootfs (-want +got):\n%s", diff)
	}
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(dir, binaryPath), capabilityXattr, buf)
	if err != nil || hex.EncodeToString(buf[:n]) != wantCapHex {
		t.Errorf("rootfs vipcast capability = %x, %v; want %s", buf[:max(n, 0)], err, wantCapHex)
	}
}
