package testenv

import (
	"cmp"
	"os"
	"path/filepath"
	"testing"

	"github.com/herdhq/herd/internal/media/vmafmodel"
)

// VMAFFFmpeg is where make test puts the measuring ffmpeg, a static
// ffmpeg 4.1 with libvmaf 1.x from the npm registry
// (@ffmpeg-installer/linux-x64@4.1.0; scripts/install-deps.sh), unless
// HERD_VMAF_FFMPEG names another.
func VMAFFFmpeg() string {
	home, _ := os.UserHomeDir()
	return cmp.Or(os.Getenv("HERD_VMAF_FFMPEG"), filepath.Join(home, ".cache", "herd", "bin", "ffmpeg-4.1.0-vmaf", "ffmpeg"))
}

// VMAF returns the measuring ffmpeg and the VMAF model it reads (written
// to a test folder). Without that ffmpeg the test is skipped, unless
// HERD_REQUIRE_VMAF is set (as make test does): then it fails.
func VMAF(t testing.TB) (ffmpeg, model string) {
	t.Helper()
	ffmpeg = VMAFFFmpeg()
	if st, err := os.Stat(ffmpeg); err != nil || st.Mode()&0o111 == 0 {
		if os.Getenv("HERD_REQUIRE_VMAF") != "" {
			t.Fatalf("the measuring ffmpeg %s is required here (HERD_REQUIRE_VMAF is set; make deps-test installs it)", ffmpeg)
		}
		t.Skipf("no measuring ffmpeg with libvmaf at %s (make test installs one)", ffmpeg)
	}
	model, err := vmafmodel.Write(filepath.Join(t.TempDir(), "vmaf"))
	if err != nil {
		t.Fatal(err)
	}
	return ffmpeg, model
}
