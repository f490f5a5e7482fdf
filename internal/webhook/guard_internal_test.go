package webhook

import (
	"errors"
	"testing"
)

// TestControlDialRejects calls the dialer's Control hook directly for
// non-loopback addresses, so a failing check can never send a packet to
// them. The real dial path is covered with loopback servers in guard_test.go.
func TestControlDialRejects(t *testing.T) {
	tests := []struct{ network, address string }{
		{"tcp4", "10.0.0.1:443"},
		{"tcp4", "192.168.0.10:80"},
		{"tcp4", "169.254.169.254:80"},
		{"tcp4", "100.64.0.1:443"},
		{"tcp4", "0.0.0.0:80"},
		{"tcp6", "[fd00:ec2::254]:80"},
		{"tcp6", "[fe80::1%eth0]:443"},
		{"tcp6", "[::ffff:10.0.0.1]:443"},
		{"tcp6", "[::ffff:169.254.169.254]:80"},
		{"tcp6", "[::1]:80"},
		{"tcp", "not-an-address"},
		{"tcp", "hooks.example.test:443"},
	}
	for _, tt := range tests {
		err := controlDial(tt.network, tt.address, nil)
		if !errors.Is(err, ErrBlockedAddress) {
			t.Errorf("controlDial(%s, %s) = %v, want ErrBlockedAddress",
				tt.network, tt.address, err)
		}
	}
}

func TestControlDialAllowsPublic(t *testing.T) {
	tests := []struct{ network, address string }{
		{"tcp4", "8.8.8.8:443"},
		{"tcp4", "203.0.113.7:80"},
		{"tcp6", "[2606:4700:4700::1111]:443"},
		{"tcp6", "[::ffff:8.8.8.8]:443"},
	}
	for _, tt := range tests {
		if err := controlDial(tt.network, tt.address, nil); err != nil {
			t.Errorf("controlDial(%s, %s) = %v, want nil", tt.network, tt.address, err)
		}
	}
}
