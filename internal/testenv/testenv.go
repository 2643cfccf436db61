// Package testenv holds what the tests' throwaway servers (PostgreSQL,
// MinIO, herd itself) share, and the browser the UI's tests drive.
package testenv

import "net"

// FreePort is a loopback TCP port nothing listened on a moment ago. Another
// process may take it before the caller does: callers retry on a clash.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
