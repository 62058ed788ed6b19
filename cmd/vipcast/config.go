package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/policy"
	"github.com/vipcast/vipcast/speaker"
	"github.com/vipcast/vipcast/speaker/apiserver"
	"github.com/vipcast/vipcast/speaker/kube"
	"github.com/vipcast/vipcast/speaker/metrics"
)

// fileConfig is the whole configuration. Each package owns its part and
// validates it; this file is the only place that knows viper.
type fileConfig struct {
	Speaker speaker.Config   `mapstructure:",squash"`
	Peering peers.Config     `mapstructure:",squash"`
	Policy  policy.Config    `mapstructure:"policy"`
	API     apiserver.Config `mapstructure:"api"`
	Metrics metrics.Config   `mapstructure:"metrics"`
	// Node differs on every node: kept out of the config digest.
	Node       kube.NodeConfig `mapstructure:"node" json:"-"`
	Kubernetes kube.Config     `mapstructure:"kubernetes"`
}

func defaultConfig() fileConfig {
	return fileConfig{Speaker: speaker.Default(), Peering: peers.Default(), Policy: policy.Default(), API: apiserver.Default(), Metrics: metrics.Default(),
		Node: kube.DefaultNode(), Kubernetes: kube.Default()}
}

// envPrefix: VIPCAST_HEALTH_INTERVAL sets health.interval.
const envPrefix = "VIPCAST"

// configFlags are the settings that also have a flag. Lists of peers stay
// in the file: packing them into flags or env strings is how config sprawls.
var configFlags = []struct{ flag, key, usage string }{
	{"vip", "vips", "VIP host prefix to advertise (repeatable)"},
	{"asn", "bgp.asn", "local ASN"},
	{"router-id", "bgp.routerid", "BGP router ID, or auto"},
	{"health-url", "health.url", "URL of the local apiserver's readiness endpoint"},
	{"health-interval", "health.interval", "probe interval"},
	{"health-timeout", "health.timeout", "probe timeout"},
	{"drain-period", "shutdown.drainperiod", "wait between withdraw and exit on SIGTERM"},
}

func addConfigFlags(fs *pflag.FlagSet) {
	fs.StringP("config", "c", "", "configuration file (YAML)")
	for _, f := range configFlags {
		if f.key == "vips" {
			fs.StringSlice(f.flag, nil, f.usage)
			continue
		}
		fs.String(f.flag, "", f.usage)
	}
}

// loadConfig reads the file named by --config, then VIPCAST_* variables,
// then flags; later ones win. It returns every problem at once.
func loadConfig(fs *pflag.FlagSet, environ []string) (fileConfig, error) {
	cfg, _, err := loadSettings(fs, environ)
	return cfg, err
}

// loadSettings is loadConfig that also returns the typed values the
// validation produced.
func loadSettings(fs *pflag.FlagSet, environ []string) (fileConfig, parsed, error) {
	path, _ := fs.GetString("config")
	var in io.Reader
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return fileConfig{}, parsed{}, fmt.Errorf("--config: %w; pass a readable YAML file", err)
		}
		defer f.Close()
		in = f
	}
	overrides := map[string]any{}
	for _, f := range configFlags {
		if !fs.Changed(f.flag) {
			continue
		}
		if f.key == "vips" {
			overrides[f.key], _ = fs.GetStringSlice(f.flag)
		} else {
			overrides[f.key], _ = fs.GetString(f.flag)
		}
	}
	return parseSettings(in, environ, overrides)
}

// parseConfig is loadConfig without the file system; the fuzz target and
// the tests drive it directly.
func parseConfig(in io.Reader, environ []string, overrides map[string]any) (fileConfig, error) {
	cfg, _, err := parseSettings(in, environ, overrides)
	return cfg, err
}

// parseSettings is parseConfig that also returns the typed values; they
// are set only when there is no error.
func parseSettings(in io.Reader, environ []string, overrides map[string]any) (fileConfig, parsed, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if in != nil {
		if err := v.ReadConfig(in); err != nil {
			return fileConfig{}, parsed{}, fmt.Errorf("config file: %w; fix the YAML syntax", err)
		}
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, envPrefix+"_") {
			env[k] = val
		}
	}
	var errs []error
	known := envKeys()
	for name, val := range env {
		key, ok := known[name]
		if !ok {
			errs = append(errs, unknownEnv(name, known))
			continue
		}
		v.Set(key, val)
	}
	for k, val := range overrides {
		v.Set(k, val)
	}

	settings := v.AllSettings()
	var failed []string
	// Weak typing would take a map where a list of objects belongs as a
	// list of one: "peers: {address: ...}" would silently become one peer.
	for _, list := range objectLists() {
		if val, ok := settings[list]; ok {
			if _, isMap := val.(map[string]any); isMap {
				errs = append(errs, fmt.Errorf("%s: a map, but it must be a list; start each entry with \"- \", e.g. %s: [{address: 192.0.2.1, asn: 65000}]", list, list))
				delete(settings, list)
				failed = append(failed, list+":")
			}
		}
	}
	// mapstructure stops at the first bad value; drop each one and decode
	// again so a single run reports all of them.
	var cfg fileConfig
	var md mapstructure.Metadata
	for range 64 {
		cfg, md = defaultConfig(), mapstructure.Metadata{}
		dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
			Result:           &cfg,
			Metadata:         &md,
			WeaklyTypedInput: true,
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				wholeNumbersHook,
				mapstructure.StringToTimeDurationHookFunc(),
				mapstructure.StringToSliceHookFunc(","),
			),
		})
		if err != nil {
			return fileConfig{}, parsed{}, err
		}
		err = dec.Decode(settings)
		if err == nil {
			break
		}
		bad := decodeErrors(err, settings)
		if len(bad) == 0 {
			errs = append(errs, err)
			break
		}
		for _, b := range bad {
			errs = append(errs, b.err)
			failed = append(failed, strings.ToLower(b.name)+":")
			if !deletePath(settings, b.name) {
				return cfg, parsed{}, errors.Join(errs...)
			}
		}
	}
	// Sorted: mapstructure lists them in map order, and the same file must
	// give the same message.
	for _, k := range slices.Sorted(slices.Values(md.Unused)) {
		errs = append(errs, unknownKey(k))
	}
	// Fields that failed to decode keep their defaults, so validating the
	// rest adds only real problems.
	typed, verr := cfg.parse()
	for _, e := range flatten(verr) {
		msg := strings.ToLower(e.Error())
		if !slices.ContainsFunc(failed, func(f string) bool { return strings.HasPrefix(msg, f) }) {
			errs = append(errs, e)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, parsed{}, err
	}
	return cfg, typed, nil
}

// parsed are the typed values a run needs, parsed once, by validation.
type parsed struct {
	vips    []netip.Prefix
	attrs   policy.Attributes
	peering peers.Peering
}

// Validate runs every package's validation, then the rules that span
// packages, and joins the results.
func (c fileConfig) Validate() error {
	_, err := c.parse()
	return err
}

// parse is Validate returning the typed values too.
func (c fileConfig) parse() (parsed, error) {
	var out parsed
	var errPeers, errCross, errPolicy error
	var err error
	out.peering, err = c.Peering.Parse(c.Policy)
	if pe := (*peers.ParseError)(nil); errors.As(err, &pe) {
		errPeers = pe.Own
		// The policy section lists its own problems.
		if !errors.Is(pe.Policy, peers.ErrInvalidPolicy) {
			errCross = pe.Policy
		}
	}
	out.attrs, errPolicy = c.Policy.Attributes()
	errs := []error{c.Speaker.Validate(), errPeers, errPolicy, c.API.Validate(), c.Metrics.Validate(),
		c.Node.Validate(), c.Kubernetes.Validate(), errCross}
	if err := errors.Join(errs...); err != nil {
		return parsed{}, err
	}
	vips, err := c.Speaker.Prefixes()
	if err != nil {
		return parsed{}, err // Speaker.Validate refuses it first
	}
	out.vips = vips
	return out, nil
}

type badValue struct {
	name string
	err  error
}

// decodeErrors turns mapstructure's errors into "field: value problem; fix".
func decodeErrors(err error, settings map[string]any) []badValue {
	var out []badValue
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var de *mapstructure.DecodeError
		if !errors.As(e, &de) {
			return
		}
		val, _ := lookupPath(settings, de.Name())
		msg := fmt.Sprintf("%s: %#v is not valid (%v); check the type in the README's Configuration section", de.Name(), val, de.Unwrap())
		switch inner := de.Unwrap().Error(); {
		case strings.HasPrefix(inner, "out of range"):
			msg = fmt.Sprintf("%s: %v is %s; write a number in that range", de.Name(), val, inner)
		case strings.Contains(inner, "duration"):
			msg = fmt.Sprintf("%s: %#v is not a duration; write it like 200ms, 1s or 1m30s", de.Name(), val)
		case strings.Contains(inner, "uint") || strings.Contains(inner, "int"):
			msg = fmt.Sprintf("%s: %#v is not a whole number in range for this field; fix the number", de.Name(), val)
		case strings.Contains(inner, "bool"):
			msg = fmt.Sprintf("%s: %#v is not a boolean; write true or false", de.Name(), val)
		case strings.Contains(inner, "float"):
			msg = fmt.Sprintf("%s: %#v is not a number; write e.g. 2.5", de.Name(), val)
		}
		out = append(out, badValue{de.Name(), errors.New(msg)})
	}
	walk(err)
	return out
}

// wholeNumbersHook refuses what weak typing would silently mangle: a
// negative number for an unsigned field (-1 would wrap to 4294967295) or a
// fraction for an integer one (1.5 would become 1). Strings from the
// environment still convert.
func wholeNumbersHook(_, to reflect.Type, data any) (any, error) {
	unsigned := false
	switch to.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		unsigned = true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if to == reflect.TypeOf(time.Duration(0)) {
			return data, nil
		}
	default:
		return data, nil
	}
	// Weak typing also truncates to the field's width: an ASN of
	// 4294967297 would silently become 1.
	field := reflect.New(to).Elem()
	tooBig := func() error {
		if unsigned {
			return fmt.Errorf("out of range for this field (at most %d)", uint64(1)<<(to.Bits()-1)*2-1)
		}
		return fmt.Errorf("out of range for this field (%d to %d)", -(int64(1) << (to.Bits() - 1)), int64(1)<<(to.Bits()-1)-1)
	}
	v := reflect.ValueOf(data)
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := v.Int()
		if unsigned && n < 0 {
			return nil, fmt.Errorf("negative value for a uint field")
		}
		if (unsigned && field.OverflowUint(uint64(n))) || (!unsigned && field.OverflowInt(n)) {
			return nil, tooBig()
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n := v.Uint()
		if (unsigned && field.OverflowUint(n)) || (!unsigned && (n > math.MaxInt64 || field.OverflowInt(int64(n)))) {
			return nil, tooBig()
		}
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if f != math.Trunc(f) || (unsigned && f < 0) {
			return nil, fmt.Errorf("fraction or negative value for an int field")
		}
		// 2^64 and beyond do not fit any integer field; below that the
		// conversion is exact for whole numbers.
		if math.Abs(f) >= 1<<63 && !(unsigned && f < 1<<64) {
			return nil, tooBig()
		}
		if (unsigned && f < 1<<64 && field.OverflowUint(uint64(f))) || (!unsigned && field.OverflowInt(int64(f))) {
			return nil, tooBig()
		}
	}
	return data, nil
}

// flatten lists the leaves of a tree of joined errors.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// splitPath turns "peers[0].asn" into ["peers", 0, "asn"].
func splitPath(path string) []any {
	var out []any
	for _, part := range strings.Split(path, ".") {
		name, rest, _ := strings.Cut(part, "[")
		if name != "" {
			out = append(out, strings.ToLower(name))
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			var i int
			fmt.Sscanf(num, "%d", &i)
			out = append(out, i)
			_, rest, _ = strings.Cut(after, "[")
		}
	}
	return out
}

func lookupPath(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, p := range splitPath(path) {
		switch k := p.(type) {
		case string:
			mm, ok := cur.(map[string]any)
			if !ok {
				return nil, false
			}
			if cur, ok = mm[k]; !ok {
				return nil, false
			}
		case int:
			s, ok := cur.([]any)
			if !ok || k < 0 || k >= len(s) {
				return nil, false
			}
			cur = s[k]
		}
	}
	return cur, true
}

// deletePath removes the value at path; it reports whether it found one.
func deletePath(m map[string]any, path string) bool {
	parts := splitPath(path)
	if len(parts) == 0 {
		return false
	}
	var cur any = m
	for _, p := range parts[:len(parts)-1] {
		switch k := p.(type) {
		case string:
			mm, ok := cur.(map[string]any)
			if !ok {
				return false
			}
			cur = mm[k]
		case int:
			s, ok := cur.([]any)
			if !ok || k < 0 || k >= len(s) {
				return false
			}
			cur = s[k]
		}
	}
	switch k := parts[len(parts)-1].(type) {
	case string:
		mm, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := mm[k]; !ok {
			return false
		}
		delete(mm, k)
		return true
	case int:
		s, ok := cur.([]any)
		if !ok || k < 0 || k >= len(s) {
			return false
		}
		s[k] = nil
		return true
	}
	return false
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// objectLists are the top-level settings that hold a list of objects.
func objectLists() []string {
	var out []string
	for _, k := range allKeys(reflect.TypeOf(fileConfig{}), "") {
		if name, _, ok := strings.Cut(k, "[]."); ok && !strings.Contains(name, ".") && !slices.Contains(out, strings.ToLower(name)) {
			out = append(out, strings.ToLower(name))
		}
	}
	return out
}

// unknownEnv names the closest VIPCAST_* variable, if one is close.
func unknownEnv(name string, known map[string]string) error {
	best, bestD := "", 4
	for k := range known {
		if d := levenshtein(name, k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Errorf("%s: not a vipcast setting; did you mean %s?", name, best)
	}
	return fmt.Errorf("%s: not a vipcast setting; see the README's Configuration section for the VIPCAST_* names", name)
}

// sectionsAndKeys is every setting's key plus every section above one
// ("health", "peers[].bfd"), so a misspelt section is recognised too.
func sectionsAndKeys() []string {
	var out []string
	seen := map[string]bool{}
	for _, key := range allKeys(reflect.TypeOf(fileConfig{}), "") {
		for i, c := range key {
			if c == '.' && !seen[key[:i]] {
				seen[key[:i]] = true
				out = append(out, strings.TrimSuffix(key[:i], "[]"))
			}
		}
		out = append(out, key)
	}
	return out
}

func unknownKey(k string) error {
	norm := indexRE.ReplaceAllString(strings.ToLower(k), "[]")
	parent, leaf := splitLeaf(norm)
	best, bestD := "", 4
	for _, key := range sectionsAndKeys() {
		kp, kl := splitLeaf(strings.ToLower(key))
		d := levenshtein(norm, strings.ToLower(key))
		if kl == leaf {
			d = 0 // right name, wrong place
		} else if kp == parent && (strings.HasPrefix(kl, leaf) || strings.HasPrefix(leaf, kl)) {
			d = 1
		} else if kp == parent {
			// Compare with the key's start too: "pasword" is meant as
			// "passwordFile".
			d = min(d, levenshtein(leaf, kl), levenshtein(leaf, kl[:min(len(kl), len(leaf))])+1)
		}
		if d < bestD {
			best, bestD = key, d
		}
	}
	if best != "" {
		return fmt.Errorf("%s: unknown key; did you mean %q?", k, best)
	}
	return fmt.Errorf("%s: unknown key; remove it (the README's Configuration section lists the settings)", k)
}

func splitLeaf(k string) (parent, leaf string) {
	i := strings.LastIndex(k, ".")
	return k[:i+1], k[i+1:]
}

// envKeys maps VIPCAST_* names to the viper keys of every setting that
// can come from the environment: scalars and lists of scalars. Lists of
// objects (peers) come only from the file.
func envKeys() map[string]string {
	out := map[string]string{}
	for _, k := range allKeys(reflect.TypeOf(fileConfig{}), "") {
		if strings.Contains(k, "[]") {
			continue
		}
		k = strings.ToLower(k)
		out[envPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))] = k
	}
	return out
}

// allKeys lists every setting's dotted key, with list items
// written as peers[].address.
func allKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if tag == "-" {
			continue // filled in by the program, not a setting of its own
		}
		key := prefix
		if opts != "squash" {
			key = prefix + tag
		}
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Struct && opts == "squash":
			out = append(out, allKeys(ft, key)...)
		case ft.Kind() == reflect.Struct:
			out = append(out, allKeys(ft, key+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, allKeys(ft.Elem(), key+"[].")...)
		default:
			out = append(out, key)
		}
	}
	return out
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
