package webhooksig_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/botaserver/bota/webhooksig"
)

// The golden vector below was computed independently of this package with
//
//	printf '%s' '1767225600.{"id":"evt_1a2b3c",...,"data":{}}' |
//	  openssl dgst -sha256 -hmac 'whsec_5pXwq3T9bK7mZr2LdYc8vNfA'
//
// (OpenSSL 3, the full body as in goldenBody), and likewise for oldSecret.
const (
	goldenSecret = "whsec_5pXwq3T9bK7mZr2LdYc8vNfA"
	oldSecret    = "whsec_old4Hk2JqW9sXe6RtYu1Pz"
	goldenBody   = `{"id":"evt_1a2b3c","type":"webhook.test",` +
		`"created_at":"2026-01-01T00:00:00.000Z","data":{}}`
	goldenUnix   = 1767225600 // 2026-01-01T00:00:00Z
	goldenHex    = "09f2475272f2ee195ef25028a3469928bd1b1d956c15aceb855cc711d805fccb"
	goldenOldHex = "3919882b4988dbfff4a4105398734439d2b91fa53c9b847ef800ffeb189e9de0"
)

var goldenTime = time.Unix(goldenUnix, 0)

func signedHeader(secrets []string, ts time.Time, body []byte) http.Header {
	h := http.Header{}
	h.Set(webhooksig.TimestampHeader, strconv.FormatInt(ts.Unix(), 10))
	h.Set(webhooksig.SignatureHeader, webhooksig.Header(secrets, ts, body))
	return h
}

func TestSignGoldenVector(t *testing.T) {
	got := webhooksig.Sign(goldenSecret, goldenTime, []byte(goldenBody))
	if got != goldenHex {
		t.Errorf("Sign = %s, want %s", got, goldenHex)
	}
	got = webhooksig.Sign(oldSecret, goldenTime, []byte(goldenBody))
	if got != goldenOldHex {
		t.Errorf("Sign(old secret) = %s, want %s", got, goldenOldHex)
	}
}

func TestSignIgnoresSubsecondsAndZone(t *testing.T) {
	shifted := goldenTime.Add(999 * time.Millisecond).In(time.FixedZone("UTC+5", 5*3600))
	got := webhooksig.Sign(goldenSecret, shifted, []byte(goldenBody))
	if got != goldenHex {
		t.Errorf("Sign = %s, want %s", got, goldenHex)
	}
}

func TestHeaderFormat(t *testing.T) {
	body := []byte(goldenBody)
	one := webhooksig.Header([]string{goldenSecret}, goldenTime, body)
	if one != "v1="+goldenHex {
		t.Errorf("Header(one secret) = %q, want %q", one, "v1="+goldenHex)
	}
	two := webhooksig.Header([]string{goldenSecret, oldSecret}, goldenTime, body)
	want := "v1=" + goldenHex + " v1=" + goldenOldHex
	if two != want {
		t.Errorf("Header(two secrets) = %q, want %q", two, want)
	}
	if none := webhooksig.Header(nil, goldenTime, body); none != "" {
		t.Errorf("Header(no secrets) = %q, want empty", none)
	}
}

func TestVerifyAcceptsValid(t *testing.T) {
	body := []byte(goldenBody)
	h := signedHeader([]string{goldenSecret}, goldenTime, body)
	for _, offset := range []time.Duration{0, 300 * time.Second, -300 * time.Second} {
		err := webhooksig.Verify(goldenSecret, h, body, goldenTime.Add(offset), 0)
		if err != nil {
			t.Errorf("Verify at now%+v: %v", offset, err)
		}
	}
}

func TestVerifyTwoSignaturesEitherSecret(t *testing.T) {
	body := []byte(goldenBody)
	h := signedHeader([]string{goldenSecret, oldSecret}, goldenTime, body)
	for _, secret := range []string{goldenSecret, oldSecret} {
		if err := webhooksig.Verify(secret, h, body, goldenTime, 0); err != nil {
			t.Errorf("Verify with %s: %v", secret, err)
		}
	}
	err := webhooksig.Verify("whsec_unrelated", h, body, goldenTime, 0)
	if !errors.Is(err, webhooksig.ErrNoMatch) {
		t.Errorf("Verify with unrelated secret = %v, want ErrNoMatch", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	body := []byte(goldenBody)
	valid := func() http.Header { return signedHeader([]string{goldenSecret}, goldenTime, body) }

	tests := []struct {
		name   string
		header func() http.Header
		body   []byte
		secret string
		now    time.Time
		want   error
	}{
		{
			name: "forged signature",
			header: func() http.Header {
				h := valid()
				h.Set(webhooksig.SignatureHeader, "v1="+strings.Repeat("ab", 32))
				return h
			},
			want: webhooksig.ErrNoMatch,
		},
		{
			name:   "tampered body",
			header: valid,
			body:   []byte(strings.Replace(goldenBody, "evt_1a2b3c", "evt_1a2b3d", 1)),
			want:   webhooksig.ErrNoMatch,
		},
		{
			name:   "wrong secret",
			header: valid,
			secret: "whsec_5pXwq3T9bK7mZr2LdYc8vNfB",
			want:   webhooksig.ErrNoMatch,
		},
		{
			name:   "secret without prefix",
			header: valid,
			secret: strings.TrimPrefix(goldenSecret, "whsec_"),
			want:   webhooksig.ErrNoMatch,
		},
		{
			name: "timestamp changed after signing",
			header: func() http.Header {
				h := valid()
				h.Set(webhooksig.TimestampHeader, strconv.Itoa(goldenUnix+1))
				return h
			},
			now:  goldenTime.Add(time.Second),
			want: webhooksig.ErrNoMatch,
		},
		{
			name:   "stale",
			header: valid,
			now:    goldenTime.Add(301 * time.Second),
			want:   webhooksig.ErrStale,
		},
		{
			name:   "future",
			header: valid,
			now:    goldenTime.Add(-301 * time.Second),
			want:   webhooksig.ErrStale,
		},
		{
			name: "missing signature",
			header: func() http.Header {
				h := valid()
				h.Del(webhooksig.SignatureHeader)
				return h
			},
			want: webhooksig.ErrMissingHeader,
		},
		{
			name: "missing timestamp",
			header: func() http.Header {
				h := valid()
				h.Del(webhooksig.TimestampHeader)
				return h
			},
			want: webhooksig.ErrMissingHeader,
		},
		{
			name: "timestamp in milliseconds",
			header: func() http.Header {
				h := valid()
				h.Set(webhooksig.TimestampHeader, strconv.Itoa(goldenUnix)+"000")
				return h
			},
			want: webhooksig.ErrBadTimestamp,
		},
		{
			name: "signed timestamp",
			header: func() http.Header {
				h := valid()
				h.Set(webhooksig.TimestampHeader, "+767225600")
				return h
			},
			want: webhooksig.ErrBadTimestamp,
		},
		{
			name: "two timestamps",
			header: func() http.Header {
				h := valid()
				h.Add(webhooksig.TimestampHeader, strconv.Itoa(goldenUnix))
				return h
			},
			want: webhooksig.ErrBadTimestamp,
		},
		{
			name: "unversioned signature",
			header: func() http.Header {
				h := valid()
				h.Set(webhooksig.SignatureHeader, goldenHex)
				return h
			},
			want: webhooksig.ErrNoMatch,
		},
		{
			name: "other version prefix",
			header: func() http.Header {
				h := valid()
				h.Set(webhooksig.SignatureHeader, "v0="+goldenHex)
				return h
			},
			want: webhooksig.ErrNoMatch,
		},
		{
			name: "truncated signature",
			header: func() http.Header {
				h := valid()
				h.Set(webhooksig.SignatureHeader, "v1="+goldenHex[:62])
				return h
			},
			want: webhooksig.ErrNoMatch,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := body
			if tt.body != nil {
				b = tt.body
			}
			secret := goldenSecret
			if tt.secret != "" {
				secret = tt.secret
			}
			now := goldenTime
			if !tt.now.IsZero() {
				now = tt.now
			}
			err := webhooksig.Verify(secret, tt.header(), b, now, 0)
			if !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyListForms(t *testing.T) {
	body := []byte(goldenBody)
	tests := []struct {
		name   string
		values []string
	}{
		{"match second of two", []string{"v1=" + strings.Repeat("00", 32) + " v1=" + goldenHex}},
		{"unknown version first", []string{"v2=abc v1=" + goldenHex}},
		{"uppercase hex", []string{"v1=" + strings.ToUpper(goldenHex)}},
		{"extra spaces", []string{"  v1=" + goldenHex + "  "}},
		{"two header lines", []string{"v1=" + strings.Repeat("00", 32), "v1=" + goldenHex}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			h.Set(webhooksig.TimestampHeader, strconv.Itoa(goldenUnix))
			for _, v := range tt.values {
				h.Add(webhooksig.SignatureHeader, v)
			}
			if err := webhooksig.Verify(goldenSecret, h, body, goldenTime, 0); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestVerifyCustomTolerance(t *testing.T) {
	body := []byte(goldenBody)
	h := signedHeader([]string{goldenSecret}, goldenTime, body)
	now := goldenTime.Add(11 * time.Second)
	err := webhooksig.Verify(goldenSecret, h, body, now, 10*time.Second)
	if !errors.Is(err, webhooksig.ErrStale) {
		t.Errorf("Verify with 10s tolerance at +11s = %v, want ErrStale", err)
	}
	if err := webhooksig.Verify(goldenSecret, h, body, now, time.Minute); err != nil {
		t.Errorf("Verify with 1m tolerance at +11s: %v", err)
	}
}

func TestVerifyRequest(t *testing.T) {
	body := []byte(goldenBody)
	now := time.Now()

	r := httptest.NewRequest(http.MethodPost, "/webhooks/bota", bytes.NewReader(body))
	r.Header = signedHeader([]string{goldenSecret}, now, body)
	got, err := webhooksig.VerifyRequest(goldenSecret, r, 0)
	if err != nil {
		t.Fatalf("VerifyRequest: %v", err)
	}
	if string(got) != goldenBody {
		t.Errorf("VerifyRequest body = %q, want %q", got, goldenBody)
	}

	r = httptest.NewRequest(http.MethodPost, "/webhooks/bota", bytes.NewReader(body))
	r.Header = signedHeader([]string{oldSecret}, now, body)
	got, err = webhooksig.VerifyRequest(goldenSecret, r, 0)
	if !errors.Is(err, webhooksig.ErrNoMatch) {
		t.Errorf("VerifyRequest(wrong secret) error = %v, want ErrNoMatch", err)
	}
	if got != nil {
		t.Errorf("VerifyRequest(wrong secret) body = %q, want nil", got)
	}
}

func TestVerifyRequestBodyLimit(t *testing.T) {
	now := time.Now()
	exact := bytes.Repeat([]byte("a"), webhooksig.MaxBodyBytes)
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(exact))
	r.Header = signedHeader([]string{goldenSecret}, now, exact)
	if _, err := webhooksig.VerifyRequest(goldenSecret, r, 0); err != nil {
		t.Errorf("VerifyRequest(1 MiB body): %v", err)
	}

	over := bytes.Repeat([]byte("a"), webhooksig.MaxBodyBytes+1)
	r = httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(over))
	r.Header = signedHeader([]string{goldenSecret}, now, over)
	_, err := webhooksig.VerifyRequest(goldenSecret, r, 0)
	if !errors.Is(err, webhooksig.ErrBodyTooLarge) {
		t.Errorf("VerifyRequest(1 MiB + 1 body) = %v, want ErrBodyTooLarge", err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("v1="+goldenHex, strconv.Itoa(goldenUnix), []byte(goldenBody))
	f.Add("v1= v1=zz v2=", "0000000000", []byte{})
	f.Add("", "-123456789", []byte("x"))
	f.Fuzz(func(t *testing.T, signature, timestamp string, body []byte) {
		h := http.Header{}
		h.Set(webhooksig.TimestampHeader, timestamp)
		h.Set(webhooksig.SignatureHeader, signature)
		// Any input must be handled without panicking. A header that passes
		// must contain the real signature, because nothing else can match.
		err := webhooksig.Verify(goldenSecret, h, body, goldenTime, 0)
		if err == nil {
			unix, perr := strconv.ParseInt(timestamp, 10, 64)
			if perr != nil {
				t.Fatalf("Verify accepted unparsable timestamp %q", timestamp)
			}
			want := "v1=" + webhooksig.Sign(goldenSecret, time.Unix(unix, 0), body)
			if !strings.Contains(strings.ToLower(signature), want) {
				t.Fatalf("Verify accepted %q without the real signature %s", signature, want)
			}
		}

		// A freshly signed header always verifies, whatever the body.
		h = signedHeader([]string{goldenSecret}, goldenTime, body)
		if err := webhooksig.Verify(goldenSecret, h, body, goldenTime, 0); err != nil {
			t.Fatalf("Verify(signed body %q): %v", body, err)
		}
	})
}
