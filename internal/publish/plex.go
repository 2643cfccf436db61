package publish

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/redirect"
)

// MediaServer is the part of a Plex or Jellyfin publisher both share: which
// library's files it indexes and where the server sees them.
type MediaServer struct {
	Name    string
	URL     string // base URL, e.g. http://plex:32400
	Token   string
	Library string // the library publisher whose files it indexes
	Root    string // that library's folder here
	// ServerRoot is the same folder as the media server sees it (it may run
	// in a container with its own mount); empty when it is the same.
	ServerRoot string
	// Confirm is how long to wait for the new file to show up after a refresh.
	Confirm time.Duration
	// Poll is how often to look meanwhile.
	Poll time.Duration
	// Client, when set, is used with herd's redirect policy (a redirect
	// to another origin is not followed: the token stays with the server).
	Client *http.Client
}

// NewMediaServer is the notifier of a plex or jellyfin publisher whose
// library folder is root here.
func NewMediaServer(pc config.Publisher, root string) Notifier {
	ms := MediaServer{Name: pc.Name, URL: pc.URL, Token: pc.Token, Library: pc.Library, Root: root, ServerRoot: pc.LibraryPath,
		Confirm: time.Duration(pc.ConfirmTimeout)}
	if pc.Type == config.PublishJellyfin {
		return &Jellyfin{MediaServer: ms}
	}
	return &Plex{MediaServer: ms}
}

// Wants: media servers only index files that were written.
func (m *MediaServer) Wants(t string) bool { return t == job.EventSucceeded }

func (m *MediaServer) client() *http.Client {
	if m.Client != nil {
		return redirect.Client(m.Client)
	}
	return redirect.Client(&http.Client{Timeout: 30 * time.Second})
}

func (m *MediaServer) base() string { return strings.TrimSuffix(m.URL, "/") }

// file is the library file of ev as the server sees it.
func (m *MediaServer) file(ev Event) (string, error) {
	f, ok := ev.Files[m.Library]
	if !ok {
		return "", permanent(fmt.Errorf("%s: nothing was written to library %s for this job", m.Name, m.Library))
	}
	return mapPath(f, m.Root, m.ServerRoot), nil
}

func (m *MediaServer) wait() (time.Duration, time.Duration) {
	return cmp.Or(m.Confirm, config.DefaultConfirmTimeout), cmp.Or(m.Poll, 2*time.Second)
}

// Plex refreshes the one Plex library section that holds a new file (a
// partial scan of its folder) and waits until Plex lists it.
type Plex struct{ MediaServer }

type plexSections struct {
	MediaContainer struct {
		Directory []struct {
			Key      string `json:"key"`
			Title    string `json:"title"`
			Type     string `json:"type"`
			Location []struct {
				Path string `json:"path"`
			} `json:"Location"`
		} `json:"Directory"`
	} `json:"MediaContainer"`
}

type plexItems struct {
	MediaContainer struct {
		Metadata []struct {
			Title string `json:"title"`
			Media []struct {
				Part []struct {
					File string `json:"file"`
				} `json:"Part"`
			} `json:"Media"`
		} `json:"Metadata"`
	} `json:"MediaContainer"`
}

// plexPage is how many items one listing asks for.
const plexPage = 100

const plexHint = "check the Plex token: Settings > Network, or X-Plex-Token in a Plex web URL"

func (p *Plex) header() http.Header {
	return http.Header{
		"X-Plex-Token":             {p.Token},
		"X-Plex-Product":           {"herd"},
		"X-Plex-Client-Identifier": {"herd-" + p.Name},
	}
}

// Notify refreshes the section and confirms the item.
func (p *Plex) Notify(ctx context.Context, ev Event) (string, error) {
	file, err := p.file(ev)
	if err != nil {
		return "", err
	}
	hc := p.client()
	var secs plexSections
	if err := getJSON(ctx, hc, p.base()+"/library/sections", p.header(), &secs, "list Plex library sections", plexHint); err != nil {
		return "", err
	}
	dirs := secs.MediaContainer.Directory
	i, seen := holder(file, len(dirs), func(i int) (string, []string) {
		var paths []string
		for _, l := range dirs[i].Location {
			paths = append(paths, l.Path)
		}
		return dirs[i].Title, paths
	})
	if i < 0 {
		return "", permanent(fmt.Errorf("no Plex library section holds %s (sections: %s); add the folder to a Plex library, or set library_path to the library folder as Plex sees it",
			file, seen))
	}
	key, title, typ := dirs[i].Key, dirs[i].Title, dirs[i].Type
	q := url.Values{"path": {dirOf(file)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base()+"/library/sections/"+url.PathEscape(key)+"/refresh?"+q.Encode(), nil)
	if err != nil {
		return "", permanent(err)
	}
	req.Header = p.header()
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("refresh Plex section %s: %w", title, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", httpError("refresh Plex section "+title, resp, plexHint)
	}
	// Newest first, one page: the new file is among the latest additions.
	list := url.Values{"sort": {"addedAt:desc"}}
	switch typ {
	case "movie":
		list.Set("type", "1")
	case "show":
		list.Set("type", "4") // episodes
	}
	timeout, poll := p.wait()
	polls := 0
	took, err := confirm(ctx, timeout, poll, func() (bool, error) {
		polls++
		return listed(file, plexPage, polls%fullEvery == 0, func(start int) ([]string, error) {
			hdr := p.header()
			hdr.Set("X-Plex-Container-Start", strconv.Itoa(start))
			hdr.Set("X-Plex-Container-Size", strconv.Itoa(plexPage))
			var items plexItems
			if err := getJSON(ctx, hc, p.base()+"/library/sections/"+url.PathEscape(key)+"/all?"+list.Encode(), hdr, &items, "list Plex section "+title, plexHint); err != nil {
				return nil, err
			}
			var files []string
			for _, md := range items.MediaContainer.Metadata {
				for _, m := range md.Media {
					for _, part := range m.Part {
						files = append(files, part.File)
					}
				}
			}
			return files, nil
		})
	})
	if err != nil {
		return "", fmt.Errorf("refreshed Plex section %s, but it did not list %s: %w", title, file, err)
	}
	return fmt.Sprintf("refreshed Plex section %s (%s) for %s; listed after %s", title, key, dirOf(file), took.Round(100*time.Millisecond)), nil
}
