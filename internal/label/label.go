// Package label checks and matches job labels: a submitter's own key=value
// marks on a job (team=news, customer=42), which subscriptions may filter
// on. Keys and values follow Kubernetes' label syntax, checked by its own
// validation package, so a label means the same in herd's API as on the
// cluster herd may run on.
package label

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Max is how many labels one job or subscription may carry.
const Max = 32

// Check refuses labels that are not Kubernetes-style: a key is an optional
// DNS prefix and a slash, then a name of at most 63 letters, digits, '-',
// '_' and '.'; a value is empty or such a name.
func Check(labels map[string]string) error {
	if len(labels) > Max {
		return fmt.Errorf("%d labels; at most %d are allowed", len(labels), Max)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(labels[k]); len(errs) > 0 {
			return fmt.Errorf("label %s: value %q: %s", k, labels[k], strings.Join(errs, "; "))
		}
	}
	return nil
}

// Parse reads "k=v,k2=v2" (a form field, query parameter, upload metadata
// or a command-line flag) and checks it. An empty string is no labels.
func Parse(s string) (map[string]string, error) {
	var out map[string]string
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("label %q: write it as key=value", kv)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if out == nil {
			out = map[string]string{}
		}
		if old, dup := out[k]; dup && old != v {
			return nil, fmt.Errorf("label %s is given twice, as %q and %q", k, old, v)
		}
		out[k] = v
	}
	return out, Check(out)
}

// Format writes labels as Parse reads them, keys sorted.
func Format(labels map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + labels[k])
	}
	return b.String()
}

// Matches reports whether labels carry every key=value of selector (an
// empty selector matches everything).
func Matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if have, ok := labels[k]; !ok || have != v {
			return false
		}
	}
	return true
}
