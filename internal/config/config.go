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
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// File is a parsed configuration file.
type File struct {
	Name       string
	Settings   []Setting // top-level keys other than watch and publishers, in file order
	Watch      []Watch
	Publishers map[string]Publisher
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
	Notify       *bool    `yaml:"notify"` // false: polling only (some network file systems misreport events)
	Line         int      `yaml:"-"`
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
	// plex, jellyfin: the library publisher whose files they index
	Library string `yaml:"library"`
	Line    int    `yaml:"-"`
}

// Duration is a time.Duration written as "10s".
type Duration time.Duration

// UnmarshalYAML reads a Go duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration such as 10s or 2m", n.Value)
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
// with underscores) the file may set.
func Load(path string, known []string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(filepath.Base(path), data, known)
}

// Parse checks a file's bytes; name is used in errors.
func Parse(name string, data []byte, known []string) (*File, error) {
	f := &File{Name: name, Publishers: map[string]Publisher{}}
	fail := func(line int, format string, a ...any) error {
		return &Error{File: name, Line: line, Msg: fmt.Sprintf(format, a...)}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return f, nil // an empty file sets nothing
		}
		return nil, fail(0, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "the file must be a mapping of keys to values")
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
		default:
			if !slices.Contains(known, k.Value) {
				return nil, fail(k.Line, "unknown key %q (known: watch, publishers, %s)", k.Value, strings.Join(known, ", "))
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
	if err := f.check(fail); err != nil {
		return nil, err
	}
	return f, nil
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
	t := reflect.TypeOf(v).Elem()
	var fields []string
	for i := range t.NumField() {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
			fields = append(fields, tag)
		}
	}
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

func (f *File) check(fail func(int, string, ...any) error) error {
	for name, p := range f.Publishers {
		p.URL, p.Token, p.Secret = os.ExpandEnv(p.URL), os.ExpandEnv(p.Token), os.ExpandEnv(p.Secret)
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
			if !ok || lib.Type != PublishLibrary {
				return fail(p.Line, "publishers.%s: library must name a publisher of type library, whose files it indexes", name)
			}
		case PublishWebhook:
			if !strings.HasPrefix(p.URL, "http://") && !strings.HasPrefix(p.URL, "https://") {
				return fail(p.Line, "publishers.%s: url must be an http(s) address", name)
			}
		default:
			return fail(p.Line, "publishers.%s: type must be library, plex, jellyfin or webhook", name)
		}
		f.Publishers[name] = p
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
		}
	}
	return nil
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
