// Command vipcast-image builds vipcast's OCI image from the static binary
// without a container engine (make image), or writes the image's root
// filesystem for the Dockerfile to copy (-rootfs).
//
//	vipcast-image -binary bin/vipcast -image ghcr.io/vipcast/vipcast:v1.0.0 -o bin/vipcast-image.tar
//	vipcast-image -binary /out/vipcast -rootfs /out/rootfs
//
// The same binary and flags give the same image digest: every timestamp is
// SOURCE_DATE_EPOCH (the commit time in make image), entries are sorted and
// owned by fixed UIDs.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "vipcast-image:", err)
			os.Exit(1)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vipcast-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("binary", "bin/vipcast", "the static vipcast binary (CGO_ENABLED=0)")
	ref := fs.String("image", "ghcr.io/vipcast/vipcast:dev", "REPOSITORY:TAG the tarball names")
	out := fs.String("o", "bin/vipcast-image.tar", "output tarball")
	rootfsDir := fs.String("rootfs", "", "write the image's root filesystem to this directory instead of a tarball (for the Dockerfile; needs root)")
	version := fs.String("version", "dev", "org.opencontainers.image.version label")
	revision := fs.String("revision", "", "org.opencontainers.image.revision label (the commit)")
	source := fs.String("source", "https://github.com/vipcast/vipcast", "org.opencontainers.image.source label")
	arch := fs.String("arch", envOr("GOARCH", runtime.GOARCH), "architecture of the binary")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vipcast-image: unexpected argument %q; every input is a flag (-h lists them)\n", fs.Arg(0))
		return errUsage
	}
	created, err := sourceDateEpoch(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		fmt.Fprintln(stderr, "vipcast-image:", err)
		return errUsage
	}
	data, err := os.ReadFile(*bin)
	if err != nil {
		return fmt.Errorf("-binary: %w; build it first (make build)", err)
	}
	if *rootfsDir != "" {
		return WriteRootfs(*rootfsDir, data)
	}
	img, err := Image(Options{Binary: data, Ref: *ref, Version: *version, Revision: *revision, Source: *source, Created: created, Arch: *arch})
	if err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return fmt.Errorf("-o: %w", err)
	}
	w := bufio.NewWriter(f)
	err = WriteArchive(w, img, *ref, created)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(*out)
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s %s\n", *out, *ref, digest)
	return nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH (reproducible-builds.org): Unix
// seconds; unset means 0, so two builds of one binary still match.
func sourceDateEpoch(s string) (time.Time, error) {
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a Unix time in seconds; use e.g. $(git log -1 --format=%%ct)", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
