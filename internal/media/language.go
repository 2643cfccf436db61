package media

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	xlanguage "golang.org/x/text/language"
	"golang.org/x/text/language/display"
)

// LanguageTag is a container's language tag (ISO 639-2 as Matroska and MP4
// write it: "fre", "ger", "eng"; or already BCP 47) as the BCP 47 tag that
// HLS's LANGUAGE and DASH's lang take ("fr", "de", "en"). Unknown,
// undetermined ("und"), private-use ("qaa") and malformed tags give "":
// no language at all rather than a made-up one.
func LanguageTag(tag string) string {
	if tag == "" || tag == "und" || tag == "mis" || tag == "mul" || tag == "zxx" {
		return ""
	}
	t, err := xlanguage.Parse(tag)
	if err != nil {
		return ""
	}
	if b, conf := t.Base(); conf == xlanguage.No || b.IsPrivateUse() || b.String() == "und" {
		return ""
	}
	return t.String()
}

// languageName is a BCP 47 tag's name in its own language, capitalised
// ("Français", "Deutsch", "English"), or "" when it has none.
func languageName(tag string) string {
	if tag == "" {
		return ""
	}
	t, err := xlanguage.Parse(tag)
	if err != nil {
		return ""
	}
	name := display.Self.Name(t)
	r, size := utf8.DecodeRuneInString(name)
	if size == 0 {
		return ""
	}
	return string(unicode.ToUpper(r)) + name[size:]
}

// audioName names audio stream a of a source (the n-th, from 1) for a
// player's menu: its title, else its language's own name, else "Audio n";
// a commentary or audio description says so when the title does not.
func audioName(a AudioStream, tag string, n int) string {
	name := a.Title
	if name == "" {
		name = languageName(tag)
		switch {
		case name == "":
			name = fmt.Sprintf("Audio %d", n)
		case a.Commentary:
			name += " (commentary)"
		case a.Descriptive:
			name += " (audio description)"
		}
	}
	return name
}
