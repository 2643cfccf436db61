package deliver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Guard keeps webhooks that API callers set up off the server's own
// networks: a key holder must not make herd call into its cluster, its
// host or a cloud metadata service. Loopback, private, link-local (the
// metadata address 169.254.169.254 among them), carrier-grade NAT,
// multicast and unspecified addresses are refused unless an allowed
// prefix holds them. The check runs on the address each connection
// actually dials, so a name that resolves elsewhere later (DNS
// rebinding) is caught too.
type Guard struct {
	allow []netip.Prefix
	// Resolver looks names up for CheckURL (nil: the system's).
	Resolver *net.Resolver
}

// ErrRefused marks a target on a refused network.
var ErrRefused = errors.New("refused webhook target")

// refusedNets are address ranges no webhook created through the API may
// reach, besides what netip's predicates name.
var refusedNets = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),  // NAT64 reaches IPv4 ranges
}

// NewGuard returns a guard that lets through the addresses in allow
// (CIDR prefixes or single addresses) even where they are refused ranges.
func NewGuard(allow []string) (*Guard, error) {
	g := &Guard{}
	for _, a := range allow {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			ip, err2 := netip.ParseAddr(a)
			if err2 != nil {
				return nil, fmt.Errorf("--webhook-allow %q: give an address or a CIDR prefix, e.g. 10.0.0.0/8 or 192.168.1.20", a)
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 { // ::ffff:10.0.0.0/104 is 10.0.0.0/8
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		g.allow = append(g.allow, p.Masked())
	}
	return g, nil
}

// Allowed reports whether a webhook may connect to ip.
func (g *Guard) Allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range g.allow {
		if p.Contains(ip) {
			return true
		}
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() || !ip.IsValid() {
		return false
	}
	for _, p := range refusedNets {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// CheckURL checks a webhook URL when it is set up: http or https, no
// credentials in it, and every address its host resolves to allowed.
func (g *Guard) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: %q is not an http(s) URL", ErrRefused, raw)
	}
	if u.User != nil {
		return fmt.Errorf("%w: put no credentials in the URL; the request is signed with the subscription's secret", ErrRefused)
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		res := g.Resolver
		if res == nil {
			res = net.DefaultResolver
		}
		if addrs, err = res.LookupNetIP(ctx, "ip", host); err != nil {
			return fmt.Errorf("%w: %s does not resolve: %v", ErrRefused, host, err)
		}
	}
	for _, ip := range addrs {
		if !g.Allowed(ip) {
			return fmt.Errorf("%w: %s is %s, on a network webhooks may not reach (loopback, private, link-local or metadata); the server's --webhook-allow can let it through", ErrRefused, host, ip)
		}
	}
	return nil
}

// Client is an HTTP client whose every connection is checked against the
// guard, with no proxy from the environment (a proxy would dial for it).
func (g *Guard) Client(timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
		if err != nil || !g.Allowed(ip) {
			return fmt.Errorf("%w: %s is on a network webhooks may not reach", ErrRefused, host)
		}
		return nil
	}}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: d.DialContext, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute,
	}}
}
