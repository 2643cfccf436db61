package label

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // Format of the result; "!" + part of the error
	}{
		{"", ""},
		{"team=news", "team=news"},
		{" b=2 , a=1 ,", "a=1,b=2"},
		{"example.com/tier=gold", "example.com/tier=gold"},
		{"empty=", "empty="},
		{"a=1,a=1", "a=1"},
		{"a=1,a=2", "!given twice"},
		{"novalue", "!key=value"},
		{"=v", "!label key"},
		{"bad key=v", "!label key"},
		{"k=has space", "!value"},
		{"k=" + strings.Repeat("x", 64), "!value"},
		{"-k=v", "!label key"},
		{"Example.COM/k=v", "!label key"},
	} {
		got, err := Parse(c.in)
		if strings.HasPrefix(c.want, "!") {
			if err == nil || !strings.Contains(err.Error(), c.want[1:]) {
				t.Errorf("Parse(%q) = %v, %v; want an error with %q", c.in, got, err, c.want[1:])
			}
			continue
		}
		if err != nil || Format(got) != c.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", c.in, Format(got), err, c.want)
		}
	}
	many := map[string]string{}
	for i := range Max + 1 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	if err := Check(many); err == nil {
		t.Errorf("Check accepted %d labels", len(many))
	}
}

func TestMatches(t *testing.T) {
	labels := map[string]string{"team": "news", "tier": "gold"}
	for _, c := range []struct {
		sel  map[string]string
		want bool
	}{
		{nil, true},
		{map[string]string{"team": "news"}, true},
		{map[string]string{"team": "news", "tier": "gold"}, true},
		{map[string]string{"team": "sport"}, false},
		{map[string]string{"region": ""}, false},
	} {
		if got := Matches(c.sel, labels); got != c.want {
			t.Errorf("Matches(%v) = %v, want %v", c.sel, got, c.want)
		}
	}
	if Matches(map[string]string{"team": "news"}, nil) {
		t.Error("a selector matched a job without labels")
	}
}
