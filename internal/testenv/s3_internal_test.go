package testenv

import (
	"strings"
	"testing"
)

func TestFindVersityGWNamesInstallCommand(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("PATH", empty)
	t.Setenv("GOBIN", "")
	t.Setenv("GOPATH", empty)
	t.Setenv("HOME", empty)
	_, err := findVersityGW()
	if err == nil {
		t.Fatalf("findVersityGW with an empty PATH and HOME: no error")
	}
	if !strings.Contains(err.Error(), VersityGWInstall) {
		t.Errorf("error %q does not name %q", err, VersityGWInstall)
	}
}

func TestNewBucketName(t *testing.T) {
	for _, name := range []string{
		"TestX", "TestConformance/PresignedPutThenGet", "-", "", strings.Repeat("Ab_", 40),
	} {
		got, err := newBucketName(name)
		if err != nil {
			t.Fatalf("newBucketName(%q): %v", name, err)
		}
		if len(got) < 3 || len(got) > 63 {
			t.Errorf("newBucketName(%q) = %q: %d bytes, want 3 to 63", name, got, len(got))
		}
		for _, r := range got {
			if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-') {
				t.Errorf("newBucketName(%q) = %q contains %q", name, got, r)
			}
		}
		if strings.Contains(got, "--") || strings.HasSuffix(got, "-") {
			t.Errorf("newBucketName(%q) = %q has a doubled or trailing '-'", name, got)
		}
	}
}
