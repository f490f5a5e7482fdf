package webhook

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

// DefaultTimeout bounds one delivery attempt: connecting, sending the body
// and reading the response headers and snippet.
const DefaultTimeout = 30 * time.Second

// validateLookupTimeout bounds the DNS lookup of ValidateURL, which runs
// while an API request waits.
const validateLookupTimeout = 5 * time.Second

// privateHint ends every message about a blocked address.
const privateHint = "and this server sends webhooks only to public addresses"

// maxURLLength caps endpoint URLs so that stored rows and delivery logs stay
// small. Browsers and most servers handle at least this length.
const maxURLLength = 2048

var (
	// ErrBlockedAddress matches every *BlockedAddressError, the error for an
	// address in a loopback, private, link-local or other non-public range.
	ErrBlockedAddress = errors.New("address is not publicly routable")
	// ErrInvalidURL is wrapped by every error ValidateURL returns.
	ErrInvalidURL = errors.New("invalid webhook URL")
)

// Resolver looks up the addresses of a host name. *net.Resolver implements
// it, and tests supply fixed DNS answers.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// GuardConfig configures the HTTP client that delivers webhooks and the URL
// checks made when an endpoint is created or updated.
type GuardConfig struct {
	// AllowPrivate turns the address checks off, so deliveries may reach
	// loopback, private and link-local addresses. It is meant for local
	// development and tests (--webhook-allow-private).
	AllowPrivate bool
	// Timeout bounds each delivery attempt. Zero means DefaultTimeout.
	Timeout time.Duration
	// Resolver, when set, resolves host names for ValidateURL and for the
	// client's connections in place of the system resolver. Nil means the
	// system resolver, and the client then lets net.Dialer resolve names so
	// it keeps Happy Eyeballs and per-address deadlines.
	Resolver Resolver
}

// BlockedAddressError reports an address that deliveries may not reach.
// errors.Is(err, ErrBlockedAddress) holds for it.
type BlockedAddressError struct {
	Host   string // the name that resolved to Addr, or "" for a literal address
	Addr   netip.Addr
	Reason string // the kind of address, for example "a loopback address"
}

func (e *BlockedAddressError) Error() string {
	if e.Host != "" {
		return fmt.Sprintf("host %s resolves to %s, which is %s", e.Host, e.Addr, e.Reason)
	}
	return fmt.Sprintf("%s is %s", e.Addr, e.Reason)
}

// Is makes errors.Is match ErrBlockedAddress.
func (e *BlockedAddressError) Is(target error) bool {
	return target == ErrBlockedAddress
}

// blockedRange is a prefix that deliveries may not reach, with the reason
// used in error messages.
type blockedRange struct {
	prefix netip.Prefix
	reason string
}

// blockedRanges lists the IPv4 and IPv6 ranges that are not publicly
// routable (IANA special-purpose address registries, RFC 6890) and that a
// server could use to reach itself, its own network or a cloud metadata
// service (169.254.169.254, fd00:ec2::254). IPv4-mapped IPv6 addresses are
// unmapped before this list is checked.
var blockedRanges = []blockedRange{
	{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified address (0.0.0.0/8)"},
	{netip.MustParsePrefix("10.0.0.0/8"), "a private address (RFC 1918)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a shared CGNAT address (RFC 6598)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address, used by cloud metadata"},
	{netip.MustParsePrefix("172.16.0.0/12"), "a private address (RFC 1918)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol assignment (RFC 6890)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "a private address (RFC 1918)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address (RFC 2544)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved or broadcast address"},
	{netip.MustParsePrefix("::/128"), "the unspecified address"},
	{netip.MustParsePrefix("::1/128"), "a loopback address"},
	// IPv4-compatible addresses (::a.b.c.d) are deprecated and never routed
	// on the internet.
	{netip.MustParsePrefix("::/96"), "an IPv4-compatible address (deprecated)"},
	{netip.MustParsePrefix("fc00::/7"), "a unique local (private) address"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local address"},
	{netip.MustParsePrefix("fec0::/10"), "a site-local address (deprecated)"},
	{netip.MustParsePrefix("ff00::/8"), "a multicast address"},
}

// embeddedIPv4 lists IPv6 prefixes whose addresses carry an IPv4 address
// that a translator or tunnel relays to. That IPv4 address is checked too.
var embeddedIPv4 = []struct {
	prefix netip.Prefix
	name   string
	offset int // index of the first IPv4 byte in the 16-byte address
}{
	{netip.MustParsePrefix("64:ff9b::/96"), "a NAT64 address (RFC 6052)", 12},
	{netip.MustParsePrefix("2002::/16"), "a 6to4 address (RFC 3056)", 2},
}

// CheckAddr returns a *BlockedAddressError when deliveries may not reach
// addr, and nil for a publicly routable address.
func CheckAddr(addr netip.Addr) error {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return &BlockedAddressError{Addr: addr, Reason: "not a valid address"}
	}
	for _, r := range blockedRanges {
		if r.prefix.Contains(addr) {
			return &BlockedAddressError{Addr: addr, Reason: r.reason}
		}
	}
	if !addr.Is6() {
		return nil
	}
	bytes := addr.As16()
	for _, e := range embeddedIPv4 {
		if !e.prefix.Contains(addr) {
			continue
		}
		v4 := netip.AddrFrom4([4]byte(bytes[e.offset : e.offset+4]))
		var blocked *BlockedAddressError
		if errors.As(CheckAddr(v4), &blocked) {
			reason := fmt.Sprintf("%s embedding %s, which is %s", e.name, v4, blocked.Reason)
			return &BlockedAddressError{Addr: addr, Reason: reason}
		}
	}
	return nil
}

// controlDial runs after DNS resolution and before connect(2) for every
// address the dialer tries, so a name whose DNS answer changes between
// validation and delivery is still caught, and no packet is sent to a
// rejected address.
func controlDial(network, address string, _ syscall.RawConn) error {
	addrPort, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: dial address %q: %w", ErrBlockedAddress, address, err)
	}
	return CheckAddr(addrPort.Addr())
}

// NewClient returns the HTTP client for webhook deliveries. Unless
// c.AllowPrivate is set, its dialer rejects every blocked address at
// connect time. It never uses a proxy, because the guard would then check
// the proxy's address instead of the endpoint's. It follows no redirects,
// so a 3xx response is returned to the caller, which counts it as a failed
// delivery. Following one would send the signed body to a URL the endpoint
// owner never registered and that ValidateURL never checked.
func NewClient(c GuardConfig) *http.Client {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !c.AllowPrivate {
		dialer.Control = controlDial
	}
	dial := dialer.DialContext
	if c.Resolver != nil {
		dial = resolvingDialer(dialer, c.Resolver)
	}

	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// resolvingDialer resolves names with resolver and tries each address in
// turn with dialer, whose Control hook still checks every address.
func resolvingDialer(dialer *net.Dialer, resolver Resolver) func(
	ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("split %q: %w", address, err)
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return dialer.DialContext(ctx, network, address)
		}
		addrs, err := resolver.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
		var errs []error
		for _, a := range addrs {
			conn, err := dialer.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
}

// ValidateURL checks an endpoint URL with the system resolver. It is
// GuardConfig.ValidateURL for callers that have no GuardConfig at hand.
func ValidateURL(raw string, allowPrivate bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), validateLookupTimeout)
	defer cancel()
	return GuardConfig{AllowPrivate: allowPrivate}.ValidateURL(ctx, raw)
}

// ValidateURL checks an endpoint URL when it is created or updated. The
// scheme must be http or https, a host must be present and userinfo absent.
// Unless c.AllowPrivate is set, the host must not be a blocked address or
// resolve to one. Every error wraps ErrInvalidURL and has a message fit
// for the API's reply. A name that does not resolve is accepted, because
// DNS may be set up after the endpoint, and the dialer checks every address
// again at delivery time.
func (c GuardConfig) ValidateURL(ctx context.Context, raw string) error {
	if len(raw) > maxURLLength {
		return fmt.Errorf("%w: longer than %d characters", ErrInvalidURL, maxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: scheme must be http or https, not %q", ErrInvalidURL, u.Scheme)
	}
	if u.User != nil {
		return fmt.Errorf("%w: user name or password in the URL is not allowed", ErrInvalidURL)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: host is missing", ErrInvalidURL)
	}
	// A zone (fe80::1%eth0) only appears on link-local addresses, which
	// CheckAddr rejects, so it is dropped before parsing.
	literal, _, _ := strings.Cut(host, "%")
	addr, err := netip.ParseAddr(literal)
	isLiteral := err == nil
	if !isLiteral && endsInNumber(host) {
		return fmt.Errorf("%w: host %q looks like a shortened or numeric IPv4 address, "+
			"so write the address in dotted decimal form", ErrInvalidURL, host)
	}
	if c.AllowPrivate {
		return nil
	}
	if isLiteral {
		if err := CheckAddr(addr); err != nil {
			return fmt.Errorf("%w: %w, %s", ErrInvalidURL, err, privateHint)
		}
		return nil
	}

	resolver := c.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	addrs, err := resolver.LookupIPAddr(ctx, host)
	if err != nil {
		// An unresolvable name is accepted, as documented above, because
		// the dialer checks the addresses it gets later.
		return nil
	}
	for _, a := range addrs {
		addr, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		var blocked *BlockedAddressError
		if errors.As(CheckAddr(addr), &blocked) {
			blocked.Host = host
			return fmt.Errorf("%w: %w, %s", ErrInvalidURL, blocked, privateHint)
		}
	}
	return nil
}

// endsInNumber reports whether the last label of host is decimal or hex
// digits, as in "2130706433", "0x7f000001" or "127.1". Browsers and the C
// library's inet_aton read such names as IPv4 addresses, so they are
// rejected rather than looked up as names.
func endsInNumber(host string) bool {
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	last := labels[len(labels)-1]
	if hexDigits, ok := strings.CutPrefix(strings.ToLower(last), "0x"); ok {
		return strings.Trim(hexDigits, "0123456789abcdef") == ""
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}
