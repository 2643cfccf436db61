package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Jellyfin tells Jellyfin that a file was created in one of its libraries
// (the targeted update Sonarr and Radarr use, not a full scan) and waits
// until Jellyfin lists it.
type Jellyfin struct{ MediaServer }

type jellyfinFolder struct {
	Name           string   `json:"Name"`
	Locations      []string `json:"Locations"`
	CollectionType string   `json:"CollectionType"`
	ItemID         string   `json:"ItemId"`
}

// jellyfinPage is how many items one listing asks for.
const jellyfinPage = 100

const jellyfinHint = "check the Jellyfin API key: Dashboard > API Keys"

func (j *Jellyfin) header() http.Header {
	return http.Header{"Authorization": {fmt.Sprintf(`MediaBrowser Client="herd", Device="herd", DeviceId="herd-%s", Version="1", Token="%s"`, j.Name, j.Token)}}
}

// Notify reports the new file and confirms Jellyfin has it.
func (j *Jellyfin) Notify(ctx context.Context, ev Event) (string, error) {
	file, err := j.file(ev)
	if err != nil {
		return "", err
	}
	hc := j.client()
	var folders []jellyfinFolder
	if err := getJSON(ctx, hc, j.base()+"/Library/VirtualFolders", j.header(), &folders, "list Jellyfin libraries", jellyfinHint); err != nil {
		return "", err
	}
	i, seen := holder(file, len(folders), func(i int) (string, []string) { return folders[i].Name, folders[i].Locations })
	if i < 0 {
		return "", permanent(fmt.Errorf("no Jellyfin library holds %s (libraries: %s); add the folder to a Jellyfin library, or set library_path to the library folder as Jellyfin sees it",
			file, seen))
	}
	lib := folders[i]
	body, _ := json.Marshal(map[string]any{"Updates": []map[string]string{{"Path": file, "UpdateType": "Created"}}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.base()+"/Library/Media/Updated", bytes.NewReader(body))
	if err != nil {
		return "", permanent(err)
	}
	req.Header = j.header()
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("tell Jellyfin about %s: %w", file, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "", httpError("tell Jellyfin about a new file", resp, jellyfinHint)
	}
	q := url.Values{
		"parentId": {lib.ItemID}, "recursive": {"true"}, "fields": {"Path"},
		"sortBy": {"DateCreated"}, "sortOrder": {"Descending"}, "limit": {strconv.Itoa(jellyfinPage)},
		"includeItemTypes": {"Movie,Episode,Video"},
	}
	timeout, poll := j.wait()
	polls := 0
	took, err := confirm(ctx, timeout, poll, func() (bool, error) {
		polls++
		return listed(file, jellyfinPage, polls%fullEvery == 0, func(start int) ([]string, error) {
			q.Set("startIndex", strconv.Itoa(start))
			var items struct {
				Items []struct {
					Path string `json:"Path"`
				} `json:"Items"`
			}
			if err := getJSON(ctx, hc, j.base()+"/Items?"+q.Encode(), j.header(), &items, "list Jellyfin library "+lib.Name, jellyfinHint); err != nil {
				return nil, err
			}
			var files []string
			for _, it := range items.Items {
				files = append(files, it.Path)
			}
			return files, nil
		})
	})
	if err != nil {
		return "", fmt.Errorf("told Jellyfin about %s, but library %s did not list it: %w", file, lib.Name, err)
	}
	return fmt.Sprintf("updated Jellyfin library %s for %s; listed after %s", lib.Name, file, took.Round(100*time.Millisecond)), nil
}
