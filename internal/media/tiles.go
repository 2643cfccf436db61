package media

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/herdhq/herd/internal/profile"
)

// An hls plan's sprite tiles come from the encode's own decode: its filter
// graph has a branch that passes the frame at each output time k ×
// Interval (the nearest on the frame grid) for k < Count, and writes it as
// tile-NNNNNN.jpg, numbered by k. AssembleSprite lays the tiles out as the
// sprite sheet and writes its WebVTT track. So the source is decoded once
// for the ladder and the sprite together, and a chunked job's tiles (each
// chunk writes those of its own frames, numbered the same way) are exactly
// the unsplit job's.

// tilePattern names a tile by its index k.
const tilePattern = "tile-%06d.jpg"

// tilesInGraph reports whether the encode makes the sprite's tiles.
func (pl *Plan) tilesInGraph() bool { return pl.Format == profile.FormatHLS && pl.Thumbs.Sprite }

// tileFilter picks the tile frames out of the pre-filtered stream (output
// time t, frame index round(t×FPS)) and scales them to the tile size. The
// image2 muxer numbers the tiles it writes one after another, so the branch
// must pass a frame for every tile: it runs on the frame grid from time 0
// (video that starts late begins with its first frame), as the encode's
// pre-filters and a split plan's chunks put it (videoGraph, ChunkArgs).
func (pl *Plan) tileFilter() string {
	th := pl.Thumbs
	a := "round(t*" + ftoa(pl.FPS) + ")" // the frame's index on the output grid
	k := ftoa(th.Interval * pl.FPS)      // frames between tiles (not always whole)
	j := "round(" + a + "/" + k + ")"    // the tile nearest the frame
	return fmt.Sprintf(`select='eq(%s\,round(%s*%s))*lt(%s\,%d)',scale=%d:%d,setsar=1`, a, j, k, j, th.Count, th.TileWidth, th.TileHeight)
}

// tileArgs is the output that writes the [tiles] pad into outDir, the
// first tile numbered first.
func (pl *Plan) tileArgs(outDir string, first int) []string {
	return []string{"-map", "[tiles]", "-fps_mode", "passthrough", "-c:v", "mjpeg", "-q:v", "3",
		"-start_number", fmt.Sprint(first), "-f", "image2", "file:" + filepath.Join(filepath.Clean(outDir), tilePattern)}
}

// firstTile is the index of the first tile at or after chunk k's first frame.
func (pl *Plan) firstTile(k int) int {
	per := pl.Thumbs.Interval * pl.FPS
	first := pl.Chunks[k].First
	j := max(int(math.Floor(float64(first)/per))-1, 0)
	for int64(math.Round(float64(j)*per)) < first {
		j++
	}
	return j
}

// AssembleSprite lays the tiles found in the folders from (the first
// folder that has a tile wins) out as outDir's sprite sheet, Columns ×
// Rows, and writes its WebVTT track. A tile no folder has stays black.
func (pl *Plan) AssembleSprite(outDir string, from ...string) error {
	th := pl.Thumbs
	sheet := image.NewRGBA(image.Rect(0, 0, th.Columns*th.TileWidth, th.Rows*th.TileHeight))
	draw.Draw(sheet, sheet.Bounds(), image.Black, image.Point{}, draw.Src)
	found := 0
	for k := range th.Count {
		name := fmt.Sprintf(tilePattern, k)
		for _, dir := range from {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("sprite: %w", err)
			}
			tile, err := jpeg.Decode(bytes.NewReader(b))
			if err != nil {
				return fmt.Errorf("sprite: %s: %w", name, err)
			}
			at := image.Pt((k%th.Columns)*th.TileWidth, (k/th.Columns)*th.TileHeight)
			draw.Draw(sheet, image.Rectangle{Min: at, Max: at.Add(image.Pt(th.TileWidth, th.TileHeight))}, tile, tile.Bounds().Min, draw.Src)
			found++
			break
		}
	}
	if found == 0 {
		return errors.New("sprite: the encode made no tiles")
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, sheet, &jpeg.Options{Quality: 90}); err != nil {
		return fmt.Errorf("sprite: %w", err)
	}
	if err := writeAtomic(outDir, SpriteName, buf.Bytes()); err != nil {
		return fmt.Errorf("sprite: %w", err)
	}
	if err := writeAtomic(outDir, VTTName, []byte(pl.ThumbnailsVTT())); err != nil {
		return fmt.Errorf("sprite: %w", err)
	}
	return nil
}

// removeTiles deletes the tiles in dir once the sprite is made of them.
func removeTiles(dir string) error {
	tiles, err := filepath.Glob(filepath.Join(dir, "tile-*.jpg"))
	if err != nil {
		return err
	}
	for _, t := range tiles {
		if err := os.Remove(t); err != nil {
			return err
		}
	}
	return nil
}
