// Package window reads daily spans of local time (01:00-07:00) that
// campaigns and libraries start work in.
package window

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a daily span of local time, such as 01:00-07:00; one whose end
// is before its start runs past midnight (22:00-06:00).
type Window struct {
	start, end int // minutes after midnight
	set        bool
}

// Parse reads HH:MM-HH:MM; "" is always open.
func Parse(s string) (Window, error) {
	if s == "" {
		return Window{}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	start, err1 := clock(a)
	end, err2 := clock(b)
	switch {
	case !ok || err1 != nil || err2 != nil:
		return Window{}, fmt.Errorf("window %q is not HH:MM-HH:MM in local time, such as 01:00-07:00", s)
	case start == end:
		return Window{}, fmt.Errorf("window %q starts and ends at the same time: leave it out to run at any time", s)
	}
	return Window{start: start, end: end, set: true}, nil
}

func clock(s string) (int, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(h) != 2 || len(m) != 2 || hh > 23 || mm > 59 || hh < 0 || mm < 0 {
		return 0, fmt.Errorf("not HH:MM")
	}
	return hh*60 + mm, nil
}

// Contains reports whether t, in its own location, falls in the window.
func (w Window) Contains(t time.Time) bool {
	if !w.set {
		return true
	}
	m := t.Hour()*60 + t.Minute()
	if w.start < w.end {
		return m >= w.start && m < w.end
	}
	return m >= w.start || m < w.end
}
