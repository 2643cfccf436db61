package testenv

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// Browser starts a headless chromium (Debian's) for a test and returns its
// context; the test is skipped where there is none, unless
// HERD_REQUIRE_BROWSER is set.
func Browser(t testing.TB) context.Context {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("HERD_REQUIRE_BROWSER") != "" {
			t.Fatal("no chromium on PATH (make deps-test installs it)")
		}
		t.Skip("no chromium on PATH; make test installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // chromium refuses to run as root with its sandbox
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 10*time.Minute)
	t.Cleanup(cancel3)
	require.NoError(t, chromedp.Run(ctx), "start chromium")
	return ctx
}

// WaitJS polls a JavaScript condition in the page until it is true, and
// fails the test with the page's text when it is not within the time.
func WaitJS(t testing.TB, ctx context.Context, what, cond string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var ok bool
		err := chromedp.Run(ctx, chromedp.Evaluate(`!!(`+cond+`)`, &ok))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			var page string
			_ = chromedp.Run(ctx, chromedp.Evaluate(`location.href + "\n" + document.querySelector("main")?.innerText`, &page))
			t.Fatalf("waiting for %s (%s): err %v; page:\n%s", what, cond, err, page)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
