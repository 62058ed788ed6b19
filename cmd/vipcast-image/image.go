package main

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

const (
	binaryPath = "usr/local/bin/vipcast"
	// nonrootUID is distroless's "nonroot", which the chart's non-root mode
	// (securityContext.nonRootUID) defaults to.
	nonrootUID = 65532
	// capabilityXattr is where the kernel reads file capabilities from.
	capabilityXattr = "security.capability"
	// The CMD's config path: where the chart mounts its ConfigMap directory.
	defaultConfigPath = "/etc/vipcast/config/config.yaml"
)

// Options describe one image build.
type Options struct {
	Binary   []byte    // the static vipcast binary
	Ref      string    // repository:tag the tarball names, e.g. ghcr.io/vipcast/vipcast:v1.2.3
	Version  string    // org.opencontainers.image.version
	Revision string    // org.opencontainers.image.revision: the commit
	Source   string    // org.opencontainers.image.source
	Created  time.Time // every timestamp in the image: SOURCE_DATE_EPOCH
	Arch     string    // GOARCH of the binary
}

// netAdminCapability is the v2 struct vfs_cap_data that `setcap
// cap_net_admin+ep` writes: magic_etc = VFS_CAP_REVISION_2 |
// VFS_CAP_FLAGS_EFFECTIVE, then {permitted, inheritable} for capabilities
// 0-31 and 32-63. CAP_NET_ADMIN is 12. The chart's non-root mode gets its one
// capability from it (docs/install.md).
func netAdminCapability() []byte {
	const (
		vfsCapRevision2      = 0x02000000
		vfsCapFlagsEffective = 0x000001
		capNetAdmin          = 12
	)
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], vfsCapRevision2|vfsCapFlagsEffective)
	binary.LittleEndian.PutUint32(b[4:], 1<<capNetAdmin) // permitted, low word
	return b
}

// entry is one file of the image's root filesystem. The same list makes the
// layer (make image) and the directory the Dockerfile copies (-rootfs), so
// both give the same layout.
type entry struct {
	name     string
	dir      bool
	mode     int64
	uid, gid int
	data     []byte
	xattrs   map[string][]byte
}

func rootfs(bin []byte) []entry {
	dir := func(name string, mode int64, uid int) entry {
		return entry{name: name, dir: true, mode: mode, uid: uid, gid: uid}
	}
	file := func(name string, mode int64, data string) entry {
		return entry{name: name, mode: mode, data: []byte(data)}
	}
	es := []entry{
		dir("etc", 0o755, 0),
		// Names for the UIDs the chart runs as, for tools that look them up.
		file("etc/group", 0o644, "root:x:0:\nnonroot:x:65532:\n"),
		file("etc/passwd", 0o644, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
		dir("home", 0o755, 0),
		dir("home/nonroot", 0o700, nonrootUID),
		// The default api.socket and api.stateFile directories, owned by
		// nonroot so `docker run` as the image's USER works; the chart and the
		// static pod mount volumes over them.
		dir("run", 0o755, 0),
		dir("run/vipcast", 0o755, nonrootUID),
		dir("tmp", 0o1777, 0),
		dir("usr", 0o755, 0),
		dir("usr/local", 0o755, 0),
		dir("usr/local/bin", 0o755, 0),
		{name: binaryPath, mode: 0o755, data: bin, xattrs: map[string][]byte{capabilityXattr: netAdminCapability()}},
		dir("var", 0o755, 0),
		dir("var/lib", 0o755, 0),
		dir("var/lib/vipcast", 0o755, nonrootUID),
	}
	slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	return es
}

// layerTar is the image's one layer: sorted entries, fixed owners and
// times, the file capability as a PAX xattr record (what GNU tar
// --xattrs, containerd and Docker read and write).
func layerTar(es []entry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		for _, k := range sortedKeys(e.xattrs) {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = string(e.xattrs[k])
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Image assembles the OCI image (OCI media types, one gzip layer).
func Image(o Options) (v1.Image, error) {
	raw, err := layerTar(rootfs(o.Binary), o.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	created := v1.Time{Time: o.Created.UTC()}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: created, CreatedBy: "vipcast-image: " + binaryPath + " with cap_net_admin+ep", Comment: "vipcast " + o.Version,
	}})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = o.Arch, "linux", created
	cf.Author = ""
	cf.Config = v1.Config{
		Entrypoint: []string{"/" + binaryPath},
		Cmd:        []string{"run", "--config=" + defaultConfigPath},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		// Like the Dockerfile's distroless base; the chart and the static pod
		// set runAsUser themselves (0 with NET_ADMIN, or nonRootUID).
		User:       fmt.Sprintf("%d:%d", nonrootUID, nonrootUID),
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.created":  created.Format(time.RFC3339),
			"org.opencontainers.image.revision": o.Revision,
			"org.opencontainers.image.source":   o.Source,
			"org.opencontainers.image.title":    "vipcast",
			"org.opencontainers.image.version":  o.Version,
		},
	}
	return mutate.ConfigFile(img, cf)
}

// WriteArchive writes img as one tar that every loader takes: an OCI image
// layout (oci-layout, index.json, blobs/sha256/...; containerd's `ctr images
// import`, hence `kind load image-archive`, and Docker >= 25) plus a
// Docker-style manifest.json naming the same blobs (older `docker load`),
// the layout `docker save` writes since Docker 25. Entries are sorted and
// dated mtime so the tarball itself is reproducible too.
func WriteArchive(w io.Writer, img v1.Image, ref string, mtime time.Time) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image name %q: %w; give REPOSITORY:TAG, e.g. ghcr.io/vipcast/vipcast:v1.0.0", ref, err)
	}
	dir, err := os.MkdirTemp("", "vipcast-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("oci layout: %w", err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		// containerd and Docker name the imported image from this one.
		"io.containerd.image.name": tag.Name(),
		// The OCI spec's own: just the tag.
		"org.opencontainers.image.ref.name": tag.TagStr(),
	})); err != nil {
		return fmt.Errorf("oci layout: %w", err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	docker := tarball.Manifest{{Config: blobPath(cfgName), RepoTags: []string{tag.Name()}}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		docker[0].Layers = append(docker[0].Layers, blobPath(d))
	}
	mj, err := json.Marshal(docker)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), mj, 0o644); err != nil {
		return err
	}
	return tarDir(w, dir, mtime)
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// tarDir archives dir's regular files and directories in lexical order
// (filepath.WalkDir's), owned by root and dated mtime.
func tarDir(w io.Writer, dir string, mtime time.Time) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if d.IsDir() {
			h.Name, h.Mode, h.Typeflag = h.Name+"/", 0o755, tar.TypeDir
			return tw.WriteHeader(h)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return tw.Close()
}

// WriteRootfs writes the image's files under dir for the Dockerfile to COPY
// (FROM scratch), so a Docker build gets the same layout as make image.
// Owners and the capability xattr need root (CAP_CHOWN, CAP_SETFCAP), which
// a Dockerfile RUN has; without them it fails rather than build an image
// whose non-root mode cannot work.
func WriteRootfs(dir string, bin []byte) error {
	for _, e := range rootfs(bin) {
		p := filepath.Join(dir, filepath.FromSlash(e.name))
		var err error
		if e.dir {
			err = os.MkdirAll(p, 0o755)
		} else {
			err = os.WriteFile(p, e.data, 0o644)
		}
		if err == nil {
			err = os.Lchown(p, e.uid, e.gid)
		}
		if err == nil {
			// After chown, which clears setuid-style bits and capabilities.
			err = os.Chmod(p, fileMode(e.mode))
		}
		for _, k := range sortedKeys(e.xattrs) {
			if err == nil {
				err = unix.Lsetxattr(p, k, e.xattrs[k], 0)
			}
		}
		if err != nil {
			return fmt.Errorf("rootfs %s: %w (run as root: owners and the %s xattr need CAP_CHOWN and CAP_SETFCAP)", e.name, err, capabilityXattr)
		}
	}
	return nil
}

func fileMode(m int64) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// errUsage marks a command-line problem (exit 2).
var errUsage = errors.New("usage")
