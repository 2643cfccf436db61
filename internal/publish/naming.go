// Package publish delivers finished jobs: into a Plex/Jellyfin-style library
// folder tree, to Plex and Jellyfin (a refresh of the section that holds the
// new file, then a check that it appeared), and to signed webhooks.
package publish

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Parsed is what a source file name says about its content.
type Parsed struct {
	Title   string // movie title, or the show of an episode
	Year    int    // 0 when unknown
	Season  int    // > 0 for an episode
	Episode int
}

var (
	episodeRe = regexp.MustCompile(`(?i)^(.*?)(?:^|[\s._-]+)S(\d{1,2})[\s._-]*E(\d{1,3})(?:[\s._-]|$)`)
	crossRe   = regexp.MustCompile(`(?i)^(.*?)[\s._-]+(\d{1,2})x(\d{2,3})(?:[\s._-]|$)`)
	yearRe    = regexp.MustCompile(`[\(\[]?\b((?:19|20)\d{2})\b[\)\]]?`)
	junkRe    = regexp.MustCompile(`[\s._-]+$`)
	spacesRe  = regexp.MustCompile(`\s+`)
)

// ParseName reads a title, year, season and episode from a file name such
// as "The.Matrix.1999.1080p.BluRay.mkv" or "Some Show - S01E02 - Pilot.mp4".
func ParseName(name string) Parsed {
	base := strings.TrimSuffix(path.Base(strings.ReplaceAll(name, "\\", "/")), path.Ext(name))
	if m := episodeRe.FindStringSubmatch(base); m != nil && cleanTitle(m[1]) != "" {
		p := Parsed{Title: cleanTitle(m[1])}
		p.Season, _ = strconv.Atoi(m[2])
		p.Episode, _ = strconv.Atoi(m[3])
		p.Title, p.Year = splitYear(p.Title)
		return p
	}
	if m := crossRe.FindStringSubmatch(base); m != nil && cleanTitle(m[1]) != "" {
		p := Parsed{Title: cleanTitle(m[1])}
		p.Season, _ = strconv.Atoi(m[2])
		p.Episode, _ = strconv.Atoi(m[3])
		return p
	}
	title, year := splitYear(cleanTitle(base))
	return Parsed{Title: title, Year: year}
}

// splitYear finds the last year in s that has a title before it: the
// title is what comes before, the rest (resolution, source, group) is dropped.
func splitYear(s string) (string, int) {
	locs := yearRe.FindAllStringSubmatchIndex(s, -1)
	for i := len(locs) - 1; i >= 0; i-- {
		title := cleanTitle(s[:locs[i][0]])
		if title == "" {
			continue
		}
		year, _ := strconv.Atoi(s[locs[i][2]:locs[i][3]])
		return title, year
	}
	return s, 0
}

// cleanTitle turns separators into spaces and drops what a file name may
// not hold.
func cleanTitle(s string) string {
	if !strings.Contains(s, " ") {
		s = strings.NewReplacer(".", " ", "_", " ").Replace(s)
	}
	s = strings.Map(func(r rune) rune {
		switch {
		case r < 0x20, r == 0x7f:
			return -1
		case strings.ContainsRune(`/\:*?"<>|`, r):
			return ' '
		}
		return r
	}, s)
	s = junkRe.ReplaceAllString(spacesRe.ReplaceAllString(s, " "), "")
	s = strings.Trim(strings.TrimSpace(s), "-([ ")
	for len(s) > 150 {
		s = s[:strings.LastIndexByte(s[:150], ' ')+1]
		s = strings.TrimSpace(s)
	}
	if s == "." || s == ".." {
		return ""
	}
	return s
}

// Library layouts.
const (
	KindAuto   = "auto"
	KindMovies = "movies"
	KindTV     = "tv"
)

// LibraryPath is where a file belongs in a library of kind (auto, movies
// or tv), Plex/Jellyfin style: "Title (Year)/Title (Year).ext" for a movie,
// "Show/Season 01/Show - S01E02.ext" for an episode, "Name/Name.ext" when
// the name says neither.
func LibraryPath(kind, sourceName, ext string) string {
	p := ParseName(sourceName)
	if p.Title == "" {
		p.Title = "Untitled"
	}
	if p.Season > 0 && kind != KindMovies {
		show := p.Title
		if p.Year > 0 {
			show = fmt.Sprintf("%s (%d)", show, p.Year)
		}
		return fmt.Sprintf("%s/Season %02d/%s - S%02dE%02d%s", show, p.Season, show, p.Season, p.Episode, ext)
	}
	name := p.Title
	if p.Year > 0 {
		name = fmt.Sprintf("%s (%d)", p.Title, p.Year)
	}
	return name + "/" + name + ext
}
