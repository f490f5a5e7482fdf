package webhook_test

import (
	"strings"
	"testing"

	"github.com/botaserver/bota/internal/webhook"
)

func TestSecretBoxRoundTrip(t *testing.T) {
	box, err := webhook.NewSecretBox([]byte("server secret one"))
	if err != nil {
		t.Fatal(err)
	}
	secret := webhook.NewSecret()
	if !strings.HasPrefix(secret, "whsec_") || len(secret) != len("whsec_")+40 {
		t.Fatalf("NewSecret = %q, want whsec_ and 40 characters", secret)
	}
	sealed, err := box.Seal("we_a", secret)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, secret[len("whsec_"):]) {
		t.Error("sealed value contains the secret in plain text")
	}
	again, err := box.Seal("we_a", secret)
	if err != nil {
		t.Fatal(err)
	}
	if again == sealed {
		t.Error("two seals of one secret are equal; the nonce must differ")
	}
	got, err := box.Open("we_a", sealed)
	if err != nil || got != secret {
		t.Fatalf("Open = %q, %v; want the secret", got, err)
	}
}

func TestSecretBoxRejectsMismatch(t *testing.T) {
	box, err := webhook.NewSecretBox([]byte("server secret one"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := webhook.NewSecretBox([]byte("server secret two"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := box.Seal("we_a", webhook.NewSecret())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := box.Open("we_b", sealed); err == nil {
		t.Error("a value sealed for we_a opens for we_b")
	}
	if _, err := other.Open("we_a", sealed); err == nil {
		t.Error("a value opens under another server secret")
	}
	for _, bad := range []string{"", "v1:", "v1:!!!", "v2:" + sealed[3:], sealed[:len(sealed)-2]} {
		if _, err := box.Open("we_a", bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
	if _, err := webhook.NewSecretBox(nil); err == nil {
		t.Error("NewSecretBox(nil) succeeded")
	}
}
