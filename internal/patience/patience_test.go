package patience_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/patience"
)

// bound is how long a test waits for something that should happen after
// about a second; far more than that, far less than what the old server
// (no idle timeout, no body or response deadline) would need: forever.
const bound = 15 * time.Second

// serve runs h behind cfg's server on a loopback port and returns its address.
func serve(t *testing.T, cfg patience.Config, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := cfg.Server(h)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// closed reports whether the server closes conn within bound while send
// keeps writing to it (send returns false when it has nothing more to say).
func closed(t *testing.T, conn net.Conn, send func(i int) bool) bool {
	t.Helper()
	gone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, conn) // until the server closes the connection
		close(gone)
	}()
	stop := time.After(bound)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	sending := true
	for i := 0; ; i++ {
		select {
		case <-gone:
			return true
		case <-stop:
			return false
		case <-tick.C:
			if sending {
				sending = send(i)
			}
		}
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func ok(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }

// TestTrickledHeaderIsCut: a client that sends its header a line at a time
// never finishes it: the connection is closed after ReadHeader.
func TestTrickledHeaderIsCut(t *testing.T) {
	t.Parallel()
	addr := serve(t, patience.Config{ReadHeader: time.Second}, http.HandlerFunc(ok))
	conn := dial(t, addr)
	_, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: herd\r\n")
	require.NoError(t, err)
	require.True(t, closed(t, conn, func(i int) bool {
		_, err := fmt.Fprintf(conn, "X-Trickle-%d: x\r\n", i)
		return err == nil
	}), "a trickled header holds the connection")
}

// TestIdleConnectionIsClosed: a connection that says nothing, and a
// keep-alive connection that says nothing more after a request, are closed.
func TestIdleConnectionIsClosed(t *testing.T) {
	t.Parallel()
	addr := serve(t, patience.Config{ReadHeader: time.Second, Idle: time.Second}, http.HandlerFunc(ok))

	silent := dial(t, addr)
	require.True(t, closed(t, silent, func(int) bool { return false }), "a silent connection is held")

	idle := dial(t, addr)
	_, err := io.WriteString(idle, "GET / HTTP/1.1\r\nHost: herd\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "ok", string(b))
	require.False(t, resp.Close, "the connection is kept alive")
	gone := make(chan error, 1)
	go func() { _, err := br.ReadByte(); gone <- err }()
	select {
	case err := <-gone:
		require.ErrorIs(t, err, io.EOF, "the server closed the idle connection")
	case <-time.After(bound):
		t.Fatal("an idle keep-alive connection is held")
	}
}

// reader is a handler that reads the whole body and reports how it went.
type reader struct {
	mu   sync.Mutex
	errs []error
	n    []int
}

func (h *reader) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	h.mu.Lock()
	h.errs, h.n = append(h.errs, err), append(h.n, int(n))
	h.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_, _ = fmt.Fprint(w, n)
}

func (h *reader) results() ([]error, []int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]error(nil), h.errs...), append([]int(nil), h.n...)
}

// TestTrickledBodyIsCut: a body that arrives far below the minimum rate is
// cut off once it has fallen Stall behind: the handler's read fails with a
// timeout and the connection is closed.
func TestTrickledBodyIsCut(t *testing.T) {
	t.Parallel()
	h := &reader{}
	addr := serve(t, patience.Config{Stall: time.Second, MinRate: 1000}, h)
	conn := dial(t, addr)
	_, err := io.WriteString(conn, "PUT /upload HTTP/1.1\r\nHost: herd\r\nContent-Length: 100000\r\n\r\n")
	require.NoError(t, err)
	require.True(t, closed(t, conn, func(int) bool {
		_, err := conn.Write([]byte{'x'}) // 10 bytes a second
		return err == nil
	}), "a trickled body holds the connection")
	errs, _ := h.results()
	require.Len(t, errs, 1)
	require.ErrorIs(t, errs[0], os.ErrDeadlineExceeded)
}

// TestSteadyUploadOutlastsTheTimeouts: a body that keeps up with the
// minimum rate is never cut, however long it takes, even with a pause
// shorter than Stall; so is a fast, large one.
func TestSteadyUploadOutlastsTheTimeouts(t *testing.T) {
	t.Parallel()
	h := &reader{}
	addr := serve(t, patience.Config{ReadHeader: time.Second, Idle: time.Second, Stall: time.Second, MinRate: 10_000}, h)

	// 3 s at 100 KB/s, three times Stall and the header and idle timeouts.
	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte("x"), 10_000)
		for i := range 30 {
			if i == 10 {
				time.Sleep(600 * time.Millisecond) // a stall shorter than Stall
			}
			if _, err := pw.Write(chunk); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPut, "http://"+addr+"/upload", pr)
	require.NoError(t, err)
	req.ContentLength = 300_000
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	require.Equal(t, "300000", string(b))

	// 256 MiB as fast as loopback goes.
	big := int64(256 << 20)
	resp, err = http.Post("http://"+addr+"/upload", "application/octet-stream", io.LimitReader(zeros{}, big))
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, strconv.FormatInt(big, 10), string(b))
	errs, _ := h.results()
	require.Equal(t, []error{nil, nil}, errs)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestSlowReaderIsCut: a client that asks for a large response and stops
// reading it is cut off: the handler's write fails.
func TestSlowReaderIsCut(t *testing.T) {
	t.Parallel()
	werr := make(chan error, 1)
	addr := serve(t, patience.Config{Stall: time.Second, MinRate: 100_000}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		buf := make([]byte, 64<<10)
		for range 1 << 12 { // 256 MiB: far more than the sockets' buffers
			if _, err := w.Write(buf); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}))
	conn := dial(t, addr)
	_, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: herd\r\n\r\n")
	require.NoError(t, err)
	// Read the start, then nothing.
	_, err = io.ReadFull(conn, make([]byte, 1024))
	require.NoError(t, err)
	select {
	case err := <-werr:
		require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the response to a client that stopped reading is cut off")
	case <-time.After(bound):
		t.Fatal("a client that stopped reading holds the handler")
	}
}

// TestWaitingHandlersAreNotCut: what the server itself takes its time over
// (a long-poll after reading its request, an event stream between events,
// a pause before answering) never counts against the client, and the
// request's context is not canceled; a keep-alive connection reused after
// a pause longer than Stall still works.
func TestWaitingHandlersAreNotCut(t *testing.T) {
	t.Parallel()
	const wait = 2500 * time.Millisecond // more than Stall and the header timeout
	mux := http.NewServeMux()
	mux.HandleFunc("POST /claim", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ WaitSeconds float64 }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// tusd sets a read deadline after every read, the last one too; the
		// body has ended, and a deadline now would only cancel the request.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		select {
		case <-r.Context().Done():
			return // the answer never comes: the client sees the failure
		case <-time.After(wait):
		}
		_, _ = io.WriteString(w, `{"task":"t1"}`)
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 10 {
			_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second)) // as the live views do
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(wait):
		}
		_, _ = io.WriteString(w, "done")
	})
	addr := serve(t, patience.Config{ReadHeader: time.Second, Idle: 5 * time.Second, Stall: time.Second, MinRate: 1 << 20}, mux)

	var wg sync.WaitGroup
	wg.Go(func() {
		resp, err := http.Post("http://"+addr+"/claim", "application/json", strings.NewReader(`{"WaitSeconds":30}`))
		if !assertOK(t, resp, err, `{"task":"t1"}`) {
			t.Error("a long-poll was cut")
		}
	})
	wg.Go(func() {
		resp, err := http.Get("http://" + addr + "/events")
		want := ""
		for i := range 10 {
			want += fmt.Sprintf("data: %d\n\n", i)
		}
		if !assertOK(t, resp, err, want) {
			t.Error("an event stream was cut")
		}
	})
	wg.Go(func() {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		for i := range 2 {
			if i == 1 {
				time.Sleep(1500 * time.Millisecond) // longer than Stall, shorter than Idle
			}
			if _, err := io.WriteString(conn, "GET /slow HTTP/1.1\r\nHost: herd\r\n\r\n"); err != nil {
				t.Error(err)
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if !assertOK(t, resp, err, "done") {
				t.Errorf("request %d on one connection was cut", i+1)
				return
			}
		}
	})
	wg.Wait()
}

// TestHandlerDeadlinesStillApply: a handler may cut a read short itself (as
// tusd does to stop an upload), but cannot make the server more patient.
func TestHandlerDeadlinesStillApply(t *testing.T) {
	t.Parallel()
	got := make(chan error, 2)
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /abort", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		go func() {
			time.Sleep(300 * time.Millisecond)
			_ = rc.SetReadDeadline(time.Now())
		}()
		_, err := io.Copy(io.Discard, r.Body)
		got <- err
	})
	mux.HandleFunc("PUT /extend", func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(time.Hour))
		_, err := io.Copy(io.Discard, r.Body)
		got <- err
	})
	addr := serve(t, patience.Config{Stall: time.Second, MinRate: 1000}, mux)
	for _, path := range []string{"/abort", "/extend"} {
		conn := dial(t, addr)
		_, err := io.WriteString(conn, "PUT "+path+" HTTP/1.1\r\nHost: herd\r\nContent-Length: 100000\r\n\r\n")
		require.NoError(t, err)
		fast := path == "/abort" // above the minimum rate: only the handler stops it
		require.True(t, closed(t, conn, func(int) bool {
			n := 1
			if fast {
				n = 200
			}
			_, err := conn.Write(bytes.Repeat([]byte("x"), n))
			return err == nil
		}), "PUT %s", path)
		select {
		case err := <-got:
			require.ErrorIs(t, err, os.ErrDeadlineExceeded, path)
		case <-time.After(bound):
			t.Fatalf("PUT %s: the handler is still reading", path)
		}
	}
}

// assertOK reports whether a request got 200 and want as its body.
func assertOK(t *testing.T, resp *http.Response, err error, want string) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(b) != want {
		t.Errorf("HTTP %d, %q, %v; want %q", resp.StatusCode, b, err, want)
		return false
	}
	return true
}
