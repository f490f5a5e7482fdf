package webhook_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/botaserver/bota/internal/webhook"
)

var blockedAddrs = []struct {
	addr   string
	reason string // a word the error must contain
}{
	{"127.0.0.1", "loopback"},
	{"127.255.0.9", "loopback"},
	{"10.0.0.1", "private"},
	{"172.16.0.1", "private"},
	{"172.31.255.255", "private"},
	{"192.168.1.1", "private"},
	{"169.254.169.254", "link-local"},
	{"169.254.1.1", "link-local"},
	{"100.64.0.1", "CGNAT"},
	{"100.127.255.255", "CGNAT"},
	{"0.0.0.0", "unspecified"},
	{"0.1.2.3", "unspecified"},
	{"224.0.0.1", "multicast"},
	{"255.255.255.255", "broadcast"},
	{"192.0.0.170", "IETF"},
	{"198.18.0.1", "benchmarking"},
	{"::1", "loopback"},
	{"::", "unspecified"},
	{"::ffff:127.0.0.1", "loopback"},
	{"::ffff:10.0.0.1", "private"},
	{"::ffff:169.254.169.254", "link-local"},
	{"::127.0.0.1", "IPv4-compatible"},
	{"fd00:ec2::254", "unique local"},
	{"fc00::1", "unique local"},
	{"fe80::1", "link-local"},
	{"fe80::1%eth0", "link-local"},
	{"fec0::1", "site-local"},
	{"ff02::1", "multicast"},
	{"64:ff9b::7f00:1", "NAT64"},
	{"64:ff9b::a9fe:a9fe", "NAT64"},
	{"2002:7f00:1::1", "6to4"},
	{"2002:c0a8:101::1", "6to4"},
}

var publicAddrs = []string{
	"8.8.8.8",
	"1.1.1.1",
	"100.63.255.255",
	"100.128.0.0",
	"172.15.255.255",
	"172.32.0.0",
	"169.253.255.255",
	"203.0.113.7",
	"::ffff:8.8.8.8",
	"2606:4700:4700::1111",
	"64:ff9b::808:808",
	"2002:808:808::1",
}

func TestCheckAddrBlocked(t *testing.T) {
	for _, tt := range blockedAddrs {
		err := webhook.CheckAddr(netip.MustParseAddr(tt.addr))
		if !errors.Is(err, webhook.ErrBlockedAddress) {
			t.Errorf("CheckAddr(%s) = %v, want ErrBlockedAddress", tt.addr, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("CheckAddr(%s) = %q, want it to mention %q", tt.addr, err, tt.reason)
		}
	}
}

func TestCheckAddrPublic(t *testing.T) {
	for _, addr := range publicAddrs {
		if err := webhook.CheckAddr(netip.MustParseAddr(addr)); err != nil {
			t.Errorf("CheckAddr(%s) = %v, want nil", addr, err)
		}
	}
}

func TestCheckAddrInvalid(t *testing.T) {
	err := webhook.CheckAddr(netip.Addr{})
	if !errors.Is(err, webhook.ErrBlockedAddress) {
		t.Errorf("CheckAddr(zero Addr) = %v, want ErrBlockedAddress", err)
	}
}

// staticResolver returns fixed answers. Each host may have a sequence of
// answers, returned in turn, with the last one repeated, so a test can
// change an answer between validation and delivery.
type staticResolver struct {
	mu      sync.Mutex
	answers map[string][]string
	calls   map[string]int
}

func newStaticResolver(answers map[string][]string) *staticResolver {
	return &staticResolver{answers: answers, calls: map[string]int{}}
}

func (r *staticResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	answers, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.calls[host], len(answers)-1)
	r.calls[host]++
	var addrs []net.IPAddr
	for _, a := range strings.Split(answers[i], ",") {
		addrs = append(addrs, net.IPAddr{IP: net.ParseIP(a)})
	}
	return addrs, nil
}

func TestValidateURLRejectsBlocked(t *testing.T) {
	resolver := newStaticResolver(map[string][]string{
		"loopback.example.test": {"127.0.0.1"},
		"metadata.example.test": {"169.254.169.254"},
		"mixed.example.test":    {"203.0.113.7,10.1.2.3"},
		"v6.example.test":       {"fd00:ec2::254"},
	})
	guard := webhook.GuardConfig{Resolver: resolver}
	tests := []struct {
		url  string
		addr string // the address the message must name
	}{
		{"http://127.0.0.1/hook", "127.0.0.1"},
		{"https://10.0.0.1/hook", "10.0.0.1"},
		{"http://169.254.169.254/latest/meta-data/", "169.254.169.254"},
		{"http://[::1]:8080/hook", "::1"},
		{"http://[::ffff:127.0.0.1]/hook", "127.0.0.1"},
		{"http://[fd00:ec2::254]/", "fd00:ec2::254"},
		{"http://[fe80::1%25eth0]/", "fe80::1"},
		{"https://loopback.example.test/hook", "127.0.0.1"},
		{"https://metadata.example.test/", "169.254.169.254"},
		{"https://mixed.example.test/", "10.1.2.3"},
		{"https://v6.example.test/", "fd00:ec2::254"},
	}
	for _, tt := range tests {
		err := guard.ValidateURL(context.Background(), tt.url)
		if !errors.Is(err, webhook.ErrInvalidURL) {
			t.Errorf("ValidateURL(%s) = %v, want ErrInvalidURL", tt.url, err)
			continue
		}
		if !errors.Is(err, webhook.ErrBlockedAddress) {
			t.Errorf("ValidateURL(%s) = %v, want ErrBlockedAddress", tt.url, err)
		}
		if !strings.Contains(err.Error(), tt.addr) {
			t.Errorf("ValidateURL(%s) = %q, want it to name %s", tt.url, err, tt.addr)
		}
	}
}

func TestValidateURLRejectsMalformed(t *testing.T) {
	guard := webhook.GuardConfig{AllowPrivate: true}
	tests := []struct {
		url  string
		want string // a phrase the message must contain
	}{
		{"ftp://hooks.example.test/", "scheme"},
		{"hooks.example.test/path", "scheme"},
		{"javascript:alert(1)", "scheme"},
		{"https://user:pass@hooks.example.test/", "user name or password"},
		{"https://user@hooks.example.test/", "user name or password"},
		{"https:///path", "host is missing"},
		{"http:hooks.example.test", "host is missing"},
		{"https://hooks.example.test/\x00", "invalid control character"},
		{"https://hooks.example.test/" + strings.Repeat("a", 2048), "longer than"},
		{"http://2130706433/", "dotted decimal"},
		{"http://0x7f000001/", "dotted decimal"},
		{"http://0x7f.0.0.1/", "dotted decimal"},
		{"http://127.1/", "dotted decimal"},
		{"http://017700000001/", "dotted decimal"},
		{"http://10.0.0.1./", "dotted decimal"},
	}
	for _, tt := range tests {
		err := guard.ValidateURL(context.Background(), tt.url)
		if !errors.Is(err, webhook.ErrInvalidURL) {
			t.Errorf("ValidateURL(%.60q) = %v, want ErrInvalidURL", tt.url, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ValidateURL(%.60q) = %q, want it to contain %q", tt.url, err, tt.want)
		}
	}
}

func TestValidateURLAccepts(t *testing.T) {
	resolver := newStaticResolver(map[string][]string{
		"hooks.example.test":     {"203.0.113.7,2001:db8::7"},
		"hooks.example.test.":    {"203.0.113.7"},
		"1password.example.test": {"203.0.113.8"},
		"cafe.example.test":      {"203.0.113.9"},
	})
	guard := webhook.GuardConfig{Resolver: resolver}
	for _, u := range []string{
		"https://hooks.example.test/bota?token=abc",
		"HTTP://hooks.example.test:8443/",
		"https://203.0.113.7/hook",
		"https://[2606:4700:4700::1111]/hook",
		"https://hooks.example.test./bota",
		"https://1password.example.test/",
		"https://cafe.example.test/",
		// A name that does not resolve yet is accepted, and checked again
		// when a delivery connects.
		"https://not-yet.example.test/hook",
	} {
		if err := guard.ValidateURL(context.Background(), u); err != nil {
			t.Errorf("ValidateURL(%s) = %v, want nil", u, err)
		}
	}
}

func TestValidateURLAllowPrivate(t *testing.T) {
	resolver := newStaticResolver(map[string][]string{"loopback.example.test": {"127.0.0.1"}})
	guard := webhook.GuardConfig{AllowPrivate: true, Resolver: resolver}
	for _, u := range []string{
		"http://127.0.0.1:4002/webhooks/bota",
		"http://[::1]/",
		"http://169.254.169.254/",
		"http://loopback.example.test/",
	} {
		if err := guard.ValidateURL(context.Background(), u); err != nil {
			t.Errorf("ValidateURL(%s) with AllowPrivate = %v, want nil", u, err)
		}
	}
	if err := webhook.ValidateURL("http://127.0.0.1/", true); err != nil {
		t.Errorf("ValidateURL(127.0.0.1, allowPrivate) = %v, want nil", err)
	}
}

func TestValidateURLSystemResolver(t *testing.T) {
	// localhost comes from /etc/hosts, so this needs no DNS server.
	err := webhook.ValidateURL("http://localhost:4002/webhooks/bota", false)
	if !errors.Is(err, webhook.ErrBlockedAddress) {
		t.Errorf("ValidateURL(localhost) = %v, want ErrBlockedAddress", err)
	}
	err = webhook.ValidateURL("http://127.0.0.1/", false)
	if !errors.Is(err, webhook.ErrBlockedAddress) {
		t.Errorf("ValidateURL(127.0.0.1) = %v, want ErrBlockedAddress", err)
	}
}

// countingServer starts a loopback HTTP server that counts requests.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestClientRejectsLoopbackDial(t *testing.T) {
	srv, hits := countingServer(t)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	client := webhook.NewClient(webhook.GuardConfig{})

	for _, u := range []string{
		srv.URL,
		fmt.Sprintf("http://localhost:%d/", port),
		fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/", port),
	} {
		resp, err := client.Post(u, "application/json", strings.NewReader("{}"))
		if err == nil {
			_ = resp.Body.Close()
			t.Errorf("POST %s succeeded, want the dial rejected", u)
			continue
		}
		if !errors.Is(err, webhook.ErrBlockedAddress) {
			t.Errorf("POST %s = %v, want ErrBlockedAddress", u, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("server received %d requests, want 0", n)
	}
}

func TestClientAllowPrivateDials(t *testing.T) {
	srv, hits := countingServer(t)
	client := webhook.NewClient(webhook.GuardConfig{AllowPrivate: true})
	resp, err := client.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("POST with AllowPrivate: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("status = %d, want 204", resp.StatusCode)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("server received %d requests, want 1", n)
	}
}

func TestClientResolverAnswerRejected(t *testing.T) {
	srv, hits := countingServer(t)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	target := fmt.Sprintf("http://hooks.example.test:%d/bota", port)

	// The first answer is a documentation address (RFC 5737), which passes
	// validation; the answer then changes to loopback, as in DNS rebinding.
	// Only the loopback answer ever reaches the dialer.
	resolver := newStaticResolver(map[string][]string{
		"hooks.example.test": {"203.0.113.7", "127.0.0.1"},
	})
	guard := webhook.GuardConfig{Resolver: resolver}
	if err := guard.ValidateURL(context.Background(), target); err != nil {
		t.Fatalf("ValidateURL with public answer: %v", err)
	}

	resp, err := webhook.NewClient(guard).Post(target, "application/json",
		strings.NewReader("{}"))
	if err == nil {
		_ = resp.Body.Close()
		t.Fatal("POST succeeded, want the dial to the rebound address rejected")
	}
	if !errors.Is(err, webhook.ErrBlockedAddress) {
		t.Errorf("POST = %v, want ErrBlockedAddress", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("server received %d requests, want 0", n)
	}
}

func TestClientResolverAllowPrivate(t *testing.T) {
	srv, hits := countingServer(t)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	resolver := newStaticResolver(map[string][]string{"hooks.example.test": {"127.0.0.1"}})
	client := webhook.NewClient(webhook.GuardConfig{AllowPrivate: true, Resolver: resolver})

	target := fmt.Sprintf("http://hooks.example.test:%d/bota", port)
	resp, err := client.Post(target, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("POST through injected resolver: %v", err)
	}
	_ = resp.Body.Close()
	if n := hits.Load(); n != 1 {
		t.Errorf("server received %d requests, want 1", n)
	}

	_, err = client.Post(fmt.Sprintf("http://unknown.example.test:%d/", port),
		"application/json", strings.NewReader("{}"))
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		t.Errorf("POST to unknown host = %v, want *net.DNSError", err)
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	var targetHits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		targetHits.Add(1)
	}))
	t.Cleanup(target.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)

	client := webhook.NewClient(webhook.GuardConfig{AllowPrivate: true})
	resp, err := client.Post(redirector.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Errorf("status = %d, want 307", resp.StatusCode)
	}
	if n := targetHits.Load(); n != 0 {
		t.Errorf("redirect target received %d requests, want 0", n)
	}
}

func TestClientIgnoresProxyEnvironment(t *testing.T) {
	proxy, proxyHits := countingServer(t)
	srv, hits := countingServer(t)
	// A proxy would make the guard check the proxy's address instead of the
	// endpoint's, so the client must connect directly.
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")

	client := webhook.NewClient(webhook.GuardConfig{AllowPrivate: true})
	resp, err := client.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	_ = resp.Body.Close()
	if n := hits.Load(); n != 1 {
		t.Errorf("endpoint received %d requests, want 1", n)
	}
	if n := proxyHits.Load(); n != 0 {
		t.Errorf("proxy received %d requests, want 0", n)
	}
}

func TestClientHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		_, _ = fmt.Fprint(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)

	client := webhook.NewClient(webhook.GuardConfig{AllowPrivate: true})
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}

	resp, err := client.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("POST over TLS: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status = %d, want 200", resp.StatusCode)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol = %s, want HTTP/2", resp.Proto)
	}
}
