package testenv

import (
	"fmt"
	"os/exec"
)

// ToneClip writes a one-second 160x90 MP4 (H.264 and AAC) to path; clips
// with different frequencies differ in content, so none is a duplicate.
func ToneClip(path string, freq int) error {
	out, err := exec.Command("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=160x90:rate=15", "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%d:sample_rate=48000", freq),
		"-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-f", "mp4", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("make a test clip: %v: %s", err, out)
	}
	return nil
}
