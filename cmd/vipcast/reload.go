package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/spf13/pflag"

	"github.com/vipcast/vipcast/peers"
)

// reloadDebounce merges the burst of events one file update makes (a
// Kubernetes ConfigMap update swaps a symlink: several events at once).
const reloadDebounce = 300 * time.Millisecond

// watchReload reloads the configuration on SIGHUP and when the file named
// by --config changes, until ctx ends. See reloadOnce for what is applied.
func watchReload(ctx context.Context, hup <-chan os.Signal, fs *pflag.FlagSet, environ []string, running fileConfig, r peers.Router, node func(context.Context) peers.NodeInfo, log *slog.Logger) {

	var events <-chan fsnotify.Event
	var errs <-chan error
	if path, _ := fs.GetString("config"); path != "" {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			// Watch the directory: editors and ConfigMaps replace the file.
			err = w.Add(filepath.Dir(path))
		}
		if err != nil {
			log.Warn("not watching the configuration file; reload with SIGHUP", "file", path, "err", err)
		} else {
			defer w.Close()
			events, errs = w.Events, w.Errors
		}
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: reloading the configuration")
			running = reloadOnce(ctx, fs, environ, running, r, node, log)
		case ev := <-events:
			path, _ := fs.GetString("config")
			if base := filepath.Base(ev.Name); base != filepath.Base(path) && base != "..data" {
				continue // another file in the directory; ..data: a ConfigMap update
			}
			if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) {
				continue
			}
			debounce.Reset(reloadDebounce)
		case err := <-errs:
			log.Warn("watching the configuration file", "err", err)
		case <-debounce.C:
			path, _ := fs.GetString("config")
			if _, err := os.Stat(path); err != nil {
				continue // mid-replace; the next event retries
			}
			log.Info("configuration file changed: reloading", "file", path)
			running = reloadOnce(ctx, fs, environ, running, r, node, log)
		}
	}
}

// reloadOnce loads and validates the configuration again. A bad one is
// rejected as a whole and the running one stays. Peers (bgp.* excepted) are
// applied live, resetting only the sessions that changed; every other
// section is reported as needing a restart. It returns the configuration now
// in force.
func reloadOnce(ctx context.Context, fs *pflag.FlagSet, environ []string, running fileConfig, r peers.Router, node func(context.Context) peers.NodeInfo, log *slog.Logger) fileConfig {
	next, err := loadConfig(fs, environ)
	if err != nil {
		log.Error("configuration reload rejected; the running configuration stays\n" + problems(err))
		return running
	}
	if restart := restartChanges(running, next); len(restart) > 0 {
		log.Warn("configuration reload: these sections changed but need a restart to take effect; they keep their running values", "sections", restart)
	}
	if reflect.DeepEqual(running.Peering.Peers, next.Peering.Peers) {
		log.Info("configuration reload: peers unchanged")
		return running
	}
	// bgp and policy keep their running values until a restart, so the
	// new peers are parsed with them: a session's export policy builds on
	// the attributes the running paths carry.
	want, err := peers.Config{BGP: running.Peering.BGP, Peers: next.Peering.Peers}.Parse(running.Policy)
	if err != nil {
		log.Error("configuration reload: peers not applied; the running peers stay", "err", err)
		return running
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.Reconfigure(rctx, selectPeers(rctx, want, node, log)); err != nil {
		log.Error("configuration reload: peers not applied; the running peers stay", "err", err)
		return running
	}
	log.Info("configuration reload: peers applied", "peers", len(want.Neighbors))
	running.Peering.Peers = next.Peering.Peers
	return running
}

// liveSections are applied by a reload; every other section needs a
// restart.
var liveSections = []string{"peers"}

// restartChanges names the restart-only settings that differ between a and
// b, by their top-level key. The list comes from fileConfig itself, so a
// new section is never silently left out.
func restartChanges(a, b fileConfig) []string {
	var out []string
	var walk func(a, b reflect.Value)
	walk = func(a, b reflect.Value) {
		t := a.Type()
		for i := range t.NumField() {
			tag, opts, _ := strings.Cut(t.Field(i).Tag.Get("mapstructure"), ",")
			switch {
			case opts == "squash":
				walk(a.Field(i), b.Field(i))
			case slices.Contains(liveSections, tag):
			case !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()):
				out = append(out, tag)
			}
		}
	}
	walk(reflect.ValueOf(a), reflect.ValueOf(b))
	return out
}
