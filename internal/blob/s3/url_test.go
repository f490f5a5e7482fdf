package s3

import "testing"

func TestParseURL(t *testing.T) {
	tests := []struct {
		raw  string
		want location
	}{
		{"s3://media", location{bucket: "media"}},
		{"s3://media/", location{bucket: "media"}},
		{
			"s3://media?endpoint=http://127.0.0.1:9000&region=eu-west-1&prefix=bota",
			location{bucket: "media", endpoint: "http://127.0.0.1:9000", region: "eu-west-1",
				prefix: "bota/"},
		},
		{"s3://media?prefix=a/b/", location{bucket: "media", prefix: "a/b/"}},
	}
	for _, tc := range tests {
		got, err := parseURL(tc.raw)
		if err != nil {
			t.Errorf("parseURL(%q): %v", tc.raw, err)
			continue
		}
		if got != tc.want {
			t.Errorf("parseURL(%q) = %+v, want %+v", tc.raw, got, tc.want)
		}
	}
}

func TestParseURLRejects(t *testing.T) {
	for _, raw := range []string{
		"",
		"http://media",
		"s3://",
		"s3://key:secret@media",
		"s3://media/some/path",
		"s3://media?endpoint=127.0.0.1:9000",
		"s3://media?endpoint=ftp://host",
		"s3://media?access_key=x",
		"s3://media?region=a&region=b",
	} {
		if _, err := parseURL(raw); err == nil {
			t.Errorf("parseURL(%q): no error", raw)
		}
	}
}
