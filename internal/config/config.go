// Package config reads herd's YAML configuration file: every `herd serve`
// setting (the same names as the flags, with underscores), plus watch
// folders and publishers, which only the file can declare. Mistakes are
// errors that name the file, line and key. Flags win over the environment
// (HERD_<KEY>), which wins over the file.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/label"
	"github.com/herdhq/herd/internal/rule"
	"github.com/herdhq/herd/internal/window"
)

// File is a parsed configuration file.
type File struct {
	Name       string
	Settings   []Setting // top-level keys other than watch and publishers, in file order
	Watch      []Watch
	Publishers map[string]Publisher
	// Subscriptions are webhooks that hear of every job's life cycle.
	Subscriptions map[string]Subscription
	// Libraries are folder trees herd re-encodes by rules.
	Libraries []Library
}

// Library is a folder tree of media herd re-encodes: the files its rule
// matches are encoded with its profile and put in place of the original
// (replace), beside it (alongside), or delivered to library publishers
// (publish), leaving the original as it is.
type Library struct {
	Name    string        `yaml:"name"`
	Path    string        `yaml:"path"`
	Rule    string        `yaml:"rule"` // a CEL expression over a file's probe facts (package library)
	Profile string        `yaml:"profile"`
	Action  LibraryAction `yaml:"action"`
	// MinSavings is the fraction the new file must be smaller than the
	// original by for it to be kept (0: any smaller file).
	MinSavings Percent `yaml:"min_savings"`
	// KeepOriginals is how long a replaced original stays in the
	// library's trash folder (0: until removed by hand).
	KeepOriginals Duration `yaml:"keep_originals"`
	Window        string   `yaml:"window"`      // HH:MM-HH:MM local time: only start work then; "" any time
	MaxRunning    int      `yaml:"max_running"` // jobs of the library at once
	// ScanEvery scans the library on a schedule (0: only when asked, and at start).
	ScanEvery Duration          `yaml:"scan_every"`
	Labels    map[string]string `yaml:"labels"`
	Line      int               `yaml:"-"`
	// RuleLine is the line the rule's expression starts on.
	RuleLine int `yaml:"-"`
	// CompiledRule and Hours are the rule and the window as checked at load.
	CompiledRule *rule.Rule    `yaml:"-"`
	Hours        window.Window `yaml:"-"`
}

// What a library does with a file's new encode.
const (
	ActionReplace   = "replace"   // in place of the original, which goes to the trash
	ActionAlongside = "alongside" // beside the original
	ActionPublish   = "publish"   // to the library publishers named
)

// LibraryAction is a library's action: replace, alongside, or
// {publish: [NAME, ...]}.
type LibraryAction struct {
	Kind    string
	Publish []string
}

// UnmarshalYAML reads replace, alongside or a publish mapping.
func (a *LibraryAction) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		a.Kind = n.Value
		return nil
	case yaml.MappingNode:
		var m struct {
			Publish []string `yaml:"publish"`
		}
		if err := decodeStrict(n, &m); err != nil {
			return errors.New(err.msg)
		}
		a.Kind, a.Publish = ActionPublish, m.Publish
		return nil
	}
	return fmt.Errorf("action is replace, alongside or {publish: [NAME]}")
}

// Percent is a fraction written as "10%".
type Percent float64

// UnmarshalYAML reads N% (or a plain fraction below 1).
func (p *Percent) UnmarshalYAML(n *yaml.Node) error {
	v := strings.TrimSpace(n.Value)
	f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if strings.HasSuffix(v, "%") {
		f /= 100
	}
	if err != nil || f < 0 || f >= 1 {
		return fmt.Errorf("%q is not a percentage from 0%% to 99%%, such as 10%%", n.Value)
	}
	*p = Percent(f)
	return nil
}

// Subscription is a webhook declared in the file: every job's events
// (those in Events, the life cycle when empty) for the profiles in
// Profiles (every profile when empty) and jobs that carry Labels, signed
// with Secret.
type Subscription struct {
	Name     string            `yaml:"-"`
	URL      string            `yaml:"url"`
	Secret   string            `yaml:"secret"`
	Events   []string          `yaml:"events"`
	Profiles []string          `yaml:"profiles"`
	Labels   map[string]string `yaml:"labels"`
	Line     int               `yaml:"-"`
}

// Setting is one top-level key: a flag's value (a list for repeatable flags).
type Setting struct {
	Key    string
	Values []string
	Line   int
}

// What happens to a watched file after its job succeeded.
const (
	AfterKeep   = "keep"   // left where it was; herd remembers it and never takes it again unless it changes
	AfterMove   = "move"   // moved to done/ inside the watch folder
	AfterDelete = "delete" // removed
)

// Watch is a folder herd takes new files from.
type Watch struct {
	Path         string   `yaml:"path"`
	Profile      string   `yaml:"profile"`
	StableFor    Duration `yaml:"stable_for"`
	PollInterval Duration `yaml:"poll_interval"`
	AfterSuccess string   `yaml:"after_success"`
	Publish      []string `yaml:"publish"`
	// Labels go on every job the folder makes (subscriptions may filter on them).
	Labels map[string]string `yaml:"labels"`
	Notify *bool             `yaml:"notify"` // false: polling only (some network file systems misreport events)
	Line   int               `yaml:"-"`
}

// Publisher types.
const (
	PublishLibrary  = "library"
	PublishPlex     = "plex"
	PublishJellyfin = "jellyfin"
	PublishWebhook  = "webhook"
)

// Publisher delivers a finished job somewhere. Strings may name environment
// variables as ${NAME}, so secrets can stay out of the file.
type Publisher struct {
	Name string `yaml:"-"`
	Type string `yaml:"type"`
	// library
	Path  string `yaml:"path"`
	Kind  string `yaml:"kind"` // movies | tv | auto (default: from the file name)
	Owner string `yaml:"owner"`
	Group string `yaml:"group"`
	Mode  string `yaml:"mode"` // octal, e.g. "0644"
	// plex, jellyfin, webhook
	URL    string `yaml:"url"`
	Token  string `yaml:"token"`  // Plex token or Jellyfin API key
	Secret string `yaml:"secret"` // webhook HMAC-SHA256 key
	// webhook: the life-cycle events it is sent (none: DefaultWebhookEvents)
	Events []string `yaml:"events"`
	// plex, jellyfin: the library publisher whose files they index, and
	// that library's folder as the media server sees it, when it differs
	// (a server in a container with its own mount)
	Library        string   `yaml:"library"`
	LibraryPath    string   `yaml:"library_path"`
	ConfirmTimeout Duration `yaml:"confirm_timeout"` // how long to wait for the new file to be listed
	// plex, jellyfin, webhook: how many times to try, and the first wait
	// between tries (doubling, up to 15 minutes)
	Attempts   int      `yaml:"attempts"`
	RetryAfter Duration `yaml:"retry_after"`
	Line       int      `yaml:"-"`
}

// DefaultWebhookEvents are what a webhook publisher is sent unless its
// events say otherwise: how each job it is named on ended.
var DefaultWebhookEvents = []string{job.EventSucceeded, job.EventFailed}

// Defaults for plex, jellyfin and webhook publishers.
const (
	DefaultAttempts       = 12 // with the default retry_after, about an hour of tries
	DefaultRetryAfter     = 5 * time.Second
	DefaultConfirmTimeout = 5 * time.Minute
)

// Duration is a time.Duration written as "10s".
type Duration time.Duration

// UnmarshalYAML reads a Go duration, or a number of days ("14d").
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if days, ok := strings.CutSuffix(n.Value, "d"); ok && err != nil {
		var k int
		if k, err = strconv.Atoi(days); err == nil {
			v = time.Duration(k) * 24 * time.Hour
		}
	}
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration such as 10s, 2m or 14d", n.Value)
	}
	*d = Duration(v)
	return nil
}

// Error is a mistake in the file, with its line.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Load reads and checks a file. known lists the setting keys (flag names
// with underscores) the file may set. environ is the environment, as
// os.Environ lists it, whose HERD_WATCH_* and HERD_PUBLISHERS_* variables
// set keys too and whose variables fill in ${VAR} in publishers' URLs and
// secrets: the caller passes it, so that nothing here reads the process's.
func Load(path string, known, environ []string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(filepath.Base(path), data, known, environ)
}

// Parse checks a file's bytes; name is used in errors. known and environ
// are as for Load.
func Parse(name string, data []byte, known, environ []string) (*File, error) {
	f := &File{Name: name, Publishers: map[string]Publisher{}, Subscriptions: map[string]Subscription{}}
	fail := func(line int, format string, a ...any) error {
		return &Error{File: name, Line: line, Msg: fmt.Sprintf(format, a...)}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fail(0, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == 0 || (root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
		root = &yaml.Node{Kind: yaml.MappingNode} // an empty file (or document, "---") sets nothing
	}
	if root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "the file must be a mapping of keys to values")
	}
	if err := overlayEnv(root, environ); err != nil {
		return nil, fail(0, "%s", err)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if seen[k.Value] {
			return nil, fail(k.Line, "%s is set twice", k.Value)
		}
		seen[k.Value] = true
		switch k.Value {
		case "watch":
			if v.Kind != yaml.SequenceNode {
				return nil, fail(v.Line, "watch: expected a list of folders (- path: ...)")
			}
			for _, item := range v.Content {
				var w Watch
				if err := decodeStrict(item, &w); err != nil {
					return nil, fail(err.line, "watch: %s", err.msg)
				}
				w.Line = item.Line
				f.Watch = append(f.Watch, w)
			}
		case "publishers":
			if v.Kind != yaml.MappingNode {
				return nil, fail(v.Line, "publishers: expected a mapping of names to publishers")
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				pn, pv := v.Content[j], v.Content[j+1]
				var p Publisher
				if err := decodeStrict(pv, &p); err != nil {
					return nil, fail(err.line, "publishers.%s: %s", pn.Value, err.msg)
				}
				p.Name, p.Line = pn.Value, pn.Line
				if _, dup := f.Publishers[p.Name]; dup {
					return nil, fail(pn.Line, "publisher %s is defined twice", p.Name)
				}
				f.Publishers[p.Name] = p
			}
		case "libraries":
			if v.Kind != yaml.SequenceNode {
				return nil, fail(v.Line, "libraries: expected a list of libraries (- name: ...)")
			}
			for _, item := range v.Content {
				var l Library
				if err := decodeStrict(item, &l); err != nil {
					return nil, fail(err.line, "libraries: %s", err.msg)
				}
				l.Line, l.RuleLine = item.Line, item.Line
				for j := 0; j+1 < len(item.Content); j += 2 {
					if item.Content[j].Value == "rule" {
						r := item.Content[j+1]
						l.RuleLine = r.Line
						if r.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
							l.RuleLine++ // the expression starts on the line after | or >
						}
					}
				}
				f.Libraries = append(f.Libraries, l)
			}
		case "subscriptions":
			if v.Kind != yaml.MappingNode {
				return nil, fail(v.Line, "subscriptions: expected a mapping of names to webhooks (url, secret, events, profiles)")
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				sn, sv := v.Content[j], v.Content[j+1]
				var s Subscription
				if err := decodeStrict(sv, &s); err != nil {
					return nil, fail(err.line, "subscriptions.%s: %s", sn.Value, err.msg)
				}
				s.Name, s.Line = sn.Value, sn.Line
				if _, dup := f.Subscriptions[s.Name]; dup {
					return nil, fail(sn.Line, "subscription %s is defined twice", s.Name)
				}
				f.Subscriptions[s.Name] = s
			}
		default:
			if !slices.Contains(known, k.Value) {
				return nil, fail(k.Line, "unknown key %q (known: watch, publishers, subscriptions, libraries, %s)", k.Value, strings.Join(known, ", "))
			}
			s := Setting{Key: k.Value, Line: k.Line}
			switch v.Kind {
			case yaml.ScalarNode:
				s.Values = []string{v.Value}
			case yaml.SequenceNode:
				for _, e := range v.Content {
					if e.Kind != yaml.ScalarNode {
						return nil, fail(e.Line, "%s: expected a list of plain values", k.Value)
					}
					s.Values = append(s.Values, e.Value)
				}
			default:
				return nil, fail(v.Line, "%s: expected a value", k.Value)
			}
			f.Settings = append(f.Settings, s)
		}
	}
	if err := f.check(fail, lookup(environ)); err != nil {
		return nil, err
	}
	return f, nil
}

// Environment variables that set watch folder and publisher keys.
const (
	EnvWatch      = "HERD_WATCH_"      // HERD_WATCH_<N>_<KEY>, N counting the file's folders from 0
	EnvPublishers = "HERD_PUBLISHERS_" // HERD_PUBLISHERS_<NAME>_<KEY>
)

// EnvDeclares reports whether environ (as os.Environ lists it) sets any
// watch folder or publisher key, so herd reads them even without a file.
func EnvDeclares(environ []string) bool {
	for _, kv := range environ {
		if strings.HasPrefix(kv, EnvWatch) || strings.HasPrefix(kv, EnvPublishers) {
			return true
		}
	}
	return false
}

// lookup returns a getter of environ's variables that answers as os.Getenv
// does for the process's: the first one of a name, else "".
func lookup(environ []string) func(string) string {
	return func(name string) string {
		for _, kv := range environ {
			if k, v, ok := strings.Cut(kv, "="); ok && k == name {
				return v
			}
		}
		return ""
	}
}

// overlayEnv writes HERD_WATCH_<N>_<KEY> and HERD_PUBLISHERS_<NAME>_<KEY>
// into the document before it is decoded, so they are checked exactly like
// the file's own keys. A list (publish, events) is written comma-separated,
// labels as k=v,k2=v2.
func overlayEnv(root *yaml.Node, environ []string) error {
	type set struct{ env, key, value string }
	watch := map[int][]set{}
	var pubs []set
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, EnvWatch):
			idx, key, ok := strings.Cut(strings.TrimPrefix(k, EnvWatch), "_")
			n, err := strconv.Atoi(idx)
			if !ok || err != nil || n < 0 || key == "" {
				return fmt.Errorf("%s: expected %s<N>_<KEY>, N counting watch folders from 0", k, EnvWatch)
			}
			watch[n] = append(watch[n], set{k, strings.ToLower(key), v})
		case strings.HasPrefix(k, EnvPublishers):
			pubs = append(pubs, set{k, strings.TrimPrefix(k, EnvPublishers), v})
		}
	}
	if len(watch) > 0 {
		seq := child(root, "watch", yaml.SequenceNode)
		for _, n := range slices.Sorted(maps.Keys(watch)) {
			if n > len(seq.Content) {
				return fmt.Errorf("%s: there is no watch folder %d; number them from 0 without gaps", watch[n][0].env, n-1)
			}
			if n == len(seq.Content) {
				seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.MappingNode})
			}
			for _, s := range watch[n] {
				setKey(seq.Content[n], s.key, s.value, s.key == "publish")
				if s.key == "labels" {
					if err := setLabels(seq.Content[n], s.value); err != nil {
						return fmt.Errorf("%s: %w", s.env, err)
					}
				}
			}
		}
	}
	if len(pubs) > 0 {
		m := child(root, "publishers", yaml.MappingNode)
		keys := yamlKeys(reflect.TypeFor[Publisher]())
		slices.SortFunc(keys, func(a, b string) int { return len(b) - len(a) }) // library_path before path
		sort.Slice(pubs, func(i, j int) bool { return pubs[i].env < pubs[j].env })
		envName := func(n string) string { return strings.ToUpper(strings.ReplaceAll(n, "-", "_")) }
		for _, s := range pubs {
			name, key := "", ""
			// A publisher the file names wins (the longest such name), so
			// HERD_PUBLISHERS_TV_LIBRARY_PATH sets tv_library's path when
			// tv_library exists; otherwise the longest key is the key.
			for i := 0; i+1 < len(m.Content); i += 2 {
				pn := envName(m.Content[i].Value)
				k := strings.ToLower(strings.TrimPrefix(s.key, pn+"_"))
				if strings.HasPrefix(s.key, pn+"_") && slices.Contains(keys, k) && len(pn) > len(name) {
					name, key = pn, k
				}
			}
			for _, k := range keys {
				if key != "" {
					break
				}
				if up := "_" + strings.ToUpper(k); strings.HasSuffix(s.key, up) && len(s.key) > len(up) {
					name, key = strings.TrimSuffix(s.key, up), k
				}
			}
			if key == "" {
				sort.Strings(keys)
				return fmt.Errorf("%s: expected %s<NAME>_<KEY>, KEY one of %s", s.env, EnvPublishers, strings.Join(keys, ", "))
			}
			// The publisher of that name in the file (names compared as
			// environment variables write them), or a new one.
			var pub *yaml.Node
			for i := 0; i+1 < len(m.Content); i += 2 {
				if envName(m.Content[i].Value) == name {
					pub = m.Content[i+1]
				}
			}
			if pub == nil {
				pub = &yaml.Node{Kind: yaml.MappingNode}
				m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: strings.ToLower(name)}, pub)
			}
			setKey(pub, key, s.value, key == "events")
		}
	}
	return nil
}

// child returns root's value for key, adding an empty one of kind if absent.
func child(root *yaml.Node, key string, kind yaml.Kind) *yaml.Node {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == key {
			return root.Content[i+1]
		}
	}
	n := &yaml.Node{Kind: kind}
	root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, n)
	return n
}

// setLabels sets m's labels to the mapping written k=v,k2=v2 in value
// (label.Parse's form).
func setLabels(m *yaml.Node, value string) error {
	ls, err := label.Parse(value)
	if err != nil {
		return err
	}
	v := &yaml.Node{Kind: yaml.MappingNode}
	for _, k := range slices.Sorted(maps.Keys(ls)) {
		v.Content = append(v.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &yaml.Node{Kind: yaml.ScalarNode, Value: ls[k], Style: yaml.DoubleQuotedStyle})
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "labels" {
			m.Content[i+1] = v
		}
	}
	return nil
}

// setKey sets key in mapping m to a scalar, or to a list of the
// comma-separated values.
func setKey(m *yaml.Node, key, value string, list bool) {
	v := &yaml.Node{Kind: yaml.ScalarNode, Value: value}
	if list {
		v = &yaml.Node{Kind: yaml.SequenceNode}
		for _, e := range strings.Split(value, ",") {
			if e = strings.TrimSpace(e); e != "" {
				v.Content = append(v.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: e})
			}
		}
	}
	if m.Kind != yaml.MappingNode {
		return // decoding reports what is wrong with it
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
}

// yamlKeys lists a struct's yaml field names.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

type nodeError struct {
	line int
	msg  string
}

// decodeStrict decodes a mapping into v after checking every key is one of
// v's yaml fields, so a typo is an error with its line, not a silent default.
func decodeStrict(n *yaml.Node, v any) *nodeError {
	if n.Kind != yaml.MappingNode {
		return &nodeError{n.Line, "expected a mapping of keys to values"}
	}
	fields := yamlKeys(reflect.TypeOf(v).Elem())
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !slices.Contains(fields, n.Content[i].Value) {
			sort.Strings(fields)
			return &nodeError{n.Content[i].Line, fmt.Sprintf("unknown key %q (known: %s)", n.Content[i].Value, strings.Join(fields, ", "))}
		}
	}
	if err := n.Decode(v); err != nil {
		line := n.Line
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			return &nodeError{line, strings.Join(te.Errors, "; ")}
		}
		return &nodeError{line, strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	return nil
}

// Defaults for watch folders.
const (
	DefaultStableFor    = 10 * time.Second
	DefaultPollInterval = 10 * time.Second
)

// check validates the file and fills in its defaults; getenv fills in
// ${VAR} in publishers' URLs and secrets.
func (f *File) check(fail func(int, string, ...any) error, getenv func(string) string) error {
	for name, p := range f.Publishers {
		p.URL, p.Token, p.Secret = os.Expand(p.URL, getenv), os.Expand(p.Token, getenv), os.Expand(p.Secret, getenv)
		switch p.Type {
		case PublishLibrary:
			if !filepath.IsAbs(p.Path) {
				return fail(p.Line, "publishers.%s: a library needs an absolute path", name)
			}
			p.Path = filepath.Clean(p.Path)
			if !slices.Contains([]string{"", "auto", "movies", "tv"}, p.Kind) {
				return fail(p.Line, "publishers.%s: kind is movies, tv or auto", name)
			}
			if p.Mode != "" {
				if m, err := strconv.ParseUint(p.Mode, 8, 32); err != nil || m > 0o777 {
					return fail(p.Line, "publishers.%s: mode %q is not an octal file mode such as 0644", name, p.Mode)
				}
			}
		case PublishPlex, PublishJellyfin:
			if !strings.HasPrefix(p.URL, "http://") && !strings.HasPrefix(p.URL, "https://") {
				return fail(p.Line, "publishers.%s: url must be the server's http(s) address", name)
			}
			if p.Token == "" {
				return fail(p.Line, "publishers.%s: token is required (a Plex token or Jellyfin API key; ${ENV_VAR} works)", name)
			}
			lib, ok := f.Publishers[p.Library]
			if (!ok || lib.Type != PublishLibrary) && !slices.ContainsFunc(f.Libraries, func(l Library) bool { return l.Name == p.Library }) {
				return fail(p.Line, "publishers.%s: library must name a publisher of type library, or a library under libraries:, whose files it indexes", name)
			}
			if p.LibraryPath != "" && !strings.HasPrefix(p.LibraryPath, "/") && !windowsAbs(p.LibraryPath) {
				return fail(p.Line, "publishers.%s: library_path must be absolute: the library folder as the media server sees it", name)
			}
			if p.ConfirmTimeout == 0 {
				p.ConfirmTimeout = Duration(DefaultConfirmTimeout)
			}
		case PublishWebhook:
			if !strings.HasPrefix(p.URL, "http://") && !strings.HasPrefix(p.URL, "https://") {
				return fail(p.Line, "publishers.%s: url must be an http(s) address", name)
			}
			if p.Secret == "" {
				return fail(p.Line, "publishers.%s: secret is required: every delivery is signed with it (HMAC-SHA256; ${ENV_VAR} works)", name)
			}
			for _, e := range p.Events {
				if !slices.Contains(job.LifeCycle, e) {
					return fail(p.Line, "publishers.%s: events are %s (none: %s), not %q", name, strings.Join(job.LifeCycle, ", "), strings.Join(DefaultWebhookEvents, ", "), e)
				}
			}
		default:
			return fail(p.Line, "publishers.%s: type must be library, plex, jellyfin or webhook", name)
		}
		if len(p.Events) > 0 && p.Type != PublishWebhook {
			return fail(p.Line, "publishers.%s: events is for webhooks; a %s publisher acts on job.succeeded only", name, p.Type)
		}
		if p.Type != PublishLibrary {
			if p.Attempts < 0 {
				return fail(p.Line, "publishers.%s: attempts must be 1 or more", name)
			}
			if p.Attempts == 0 {
				p.Attempts = DefaultAttempts
			}
			if p.RetryAfter == 0 {
				p.RetryAfter = Duration(DefaultRetryAfter)
			}
		}
		f.Publishers[name] = p
	}
	for name, s := range f.Subscriptions {
		s.URL, s.Secret = os.Expand(s.URL, getenv), os.Expand(s.Secret, getenv)
		if !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://") {
			return fail(s.Line, "subscriptions.%s: url must be an http(s) address", name)
		}
		if s.Secret == "" {
			return fail(s.Line, "subscriptions.%s: secret is required: every delivery is signed with it (HMAC-SHA256; ${ENV_VAR} works)", name)
		}
		for _, e := range s.Events {
			if !slices.Contains(job.Events, e) {
				return fail(s.Line, "subscriptions.%s: events are %s (none: %s), not %q", name, strings.Join(job.Events, ", "), strings.Join(job.LifeCycle, ", "), e)
			}
		}
		if err := label.Check(s.Labels); err != nil {
			return fail(s.Line, "subscriptions.%s: labels: %v", name, err)
		}
		f.Subscriptions[name] = s
	}
	paths := map[string]int{}
	for i := range f.Watch {
		w := &f.Watch[i]
		if !filepath.IsAbs(w.Path) {
			return fail(w.Line, "watch: path must be absolute")
		}
		w.Path = filepath.Clean(w.Path)
		if prev, dup := paths[w.Path]; dup {
			return fail(w.Line, "watch: %s is already watched (line %d)", w.Path, prev)
		}
		paths[w.Path] = w.Line
		if w.Profile == "" {
			return fail(w.Line, "watch %s: profile is required", w.Path)
		}
		if err := label.Check(w.Labels); err != nil {
			return fail(w.Line, "watch %s: labels: %v", w.Path, err)
		}
		if w.StableFor == 0 {
			w.StableFor = Duration(DefaultStableFor)
		}
		if w.PollInterval == 0 {
			w.PollInterval = Duration(DefaultPollInterval)
		}
		if w.AfterSuccess == "" {
			w.AfterSuccess = AfterMove
		}
		if !slices.Contains([]string{AfterKeep, AfterMove, AfterDelete}, w.AfterSuccess) {
			return fail(w.Line, "watch %s: after_success is keep, move or delete", w.Path)
		}
		for _, pn := range w.Publish {
			p, ok := f.Publishers[pn]
			if !ok {
				return fail(w.Line, "watch %s: publisher %q is not defined under publishers", w.Path, pn)
			}
			if p.Type == PublishLibrary && (within(p.Path, w.Path) || within(w.Path, p.Path)) {
				return fail(w.Line, "watch %s: the library %s must not be inside the watch folder, or the other way round", w.Path, p.Path)
			}
			if (p.Type == PublishPlex || p.Type == PublishJellyfin) && !slices.Contains(w.Publish, p.Library) {
				return fail(w.Line, "watch %s: publisher %s indexes library %s, which this folder does not publish to; add %s to its publish list", w.Path, pn, p.Library, p.Library)
			}
		}
	}
	return f.checkLibraries(fail)
}

// DefaultLibraryRunning is how many jobs a library runs at once unless it says.
const DefaultLibraryRunning = 1

// libraryName is what a library's name may be: it is in URLs and commands.
var libraryName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidLibraryName reports whether name may name a library.
func ValidLibraryName(name string) bool { return libraryName.MatchString(name) }

// checkLibraries validates the libraries and fills in their defaults.
func (f *File) checkLibraries(fail func(int, string, ...any) error) error {
	names := map[string]bool{}
	for i := range f.Libraries {
		l := &f.Libraries[i]
		if !libraryName.MatchString(l.Name) {
			return fail(l.Line, "libraries: name %q must be lower-case letters, digits and dashes (it goes in commands and URLs)", l.Name)
		}
		if names[l.Name] {
			return fail(l.Line, "libraries: %s is defined twice", l.Name)
		}
		names[l.Name] = true
		if !filepath.IsAbs(l.Path) {
			return fail(l.Line, "libraries.%s: path must be absolute", l.Name)
		}
		l.Path = filepath.Clean(l.Path)
		if st, err := os.Stat(l.Path); err != nil || !st.IsDir() {
			return fail(l.Line, "libraries.%s: %s is not a folder this server can see (is it mounted?)", l.Name, l.Path)
		}
		if _, err := os.ReadDir(l.Path); err != nil {
			return fail(l.Line, "libraries.%s: %s cannot be read by this server (its user needs read and search permission)", l.Name, l.Path)
		}
		for _, o := range f.Libraries[:i] {
			if within(l.Path, o.Path) || within(o.Path, l.Path) {
				return fail(l.Line, "libraries.%s: %s overlaps library %s (%s)", l.Name, l.Path, o.Name, o.Path)
			}
		}
		for _, w := range f.Watch {
			if within(l.Path, w.Path) || within(w.Path, l.Path) {
				return fail(l.Line, "libraries.%s: %s overlaps the watch folder %s", l.Name, l.Path, w.Path)
			}
		}
		var err error
		if l.CompiledRule, err = rule.Compile(l.Rule); err != nil {
			re, ok := errors.AsType[*rule.RuleError](err)
			if !ok {
				return fail(l.RuleLine, "libraries.%s: rule: %v", l.Name, err)
			}
			return fail(l.RuleLine+re.Line-1, "libraries.%s: rule, column %d: %s", l.Name, re.Column, re.Msg)
		}
		if l.Profile == "" {
			return fail(l.Line, "libraries.%s: profile is required", l.Name)
		}
		switch l.Action.Kind {
		case "":
			l.Action.Kind = ActionReplace
		case ActionReplace, ActionAlongside:
		case ActionPublish:
			if len(l.Action.Publish) == 0 {
				return fail(l.Line, "libraries.%s: action: publish names the library publishers to deliver to", l.Name)
			}
			for _, pn := range l.Action.Publish {
				if p, ok := f.Publishers[pn]; !ok || p.Type != PublishLibrary {
					return fail(l.Line, "libraries.%s: action: publish: %q is not a publisher of type library", l.Name, pn)
				}
			}
		default:
			return fail(l.Line, "libraries.%s: action is replace, alongside or {publish: [NAME]}, not %q", l.Name, l.Action.Kind)
		}
		if l.Hours, err = window.Parse(l.Window); err != nil {
			return fail(l.Line, "libraries.%s: %v", l.Name, err)
		}
		if l.MaxRunning < 0 || l.MaxRunning > 64 {
			return fail(l.Line, "libraries.%s: max_running is 1 to 64", l.Name)
		}
		if l.MaxRunning == 0 {
			l.MaxRunning = DefaultLibraryRunning
		}
		if l.ScanEvery != 0 && time.Duration(l.ScanEvery) < time.Minute {
			return fail(l.Line, "libraries.%s: scan_every is a minute or more (or leave it out to scan only when asked)", l.Name)
		}
		if err := label.Check(l.Labels); err != nil {
			return fail(l.Line, "libraries.%s: labels: %v", l.Name, err)
		}
	}
	return nil
}

// windowsAbs reports a Windows path such as D:\Movies (a media server on Windows).
func windowsAbs(p string) bool {
	return len(p) >= 3 && p[1] == ':' && (p[2] == '\\' || p[2] == '/')
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
