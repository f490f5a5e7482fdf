package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/apitest"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/webhook"
)

// speechClip is a short LibriVox recording from the pocketsphinx test data.
const speechClip = "/usr/share/pocketsphinx/test/data/librivox/" +
	"sense_and_sensibility_01_austen_64kb-0870.wav"

var (
	idPattern   = regexp.MustCompile(`\b(proj|eu|dev|rec|med|txn|evt|we|whd|key|dtk|upt)_[A-Za-z0-9]{24}\b`)
	timePattern = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`)
	// ffmpeg gives each Ogg stream a random serial number, so digests of
	// the uploaded bytes change from run to run.
	digestPattern = regexp.MustCompile(`"[0-9a-f]{64}"`)
	// apitest.Env.Unique puts the time into serial numbers.
	serialPattern = regexp.MustCompile(`"SN-\d+-\d+"`)
)

// normalizeEvent replaces ids, in order of first appearance, with prefix_N,
// every timestamp with a fixed one, SHA-256 digests and serial numbers
// with placeholders, and indents the JSON.
func normalizeEvent(t *testing.T, body []byte) []byte {
	t.Helper()
	seen := map[string]string{}
	counts := map[string]int{}
	out := idPattern.ReplaceAllStringFunc(string(body), func(id string) string {
		if v, ok := seen[id]; ok {
			return v
		}
		prefix := idPattern.FindStringSubmatch(id)[1]
		counts[prefix]++
		seen[id] = prefix + "_" + strconv.Itoa(counts[prefix])
		return seen[id]
	})
	out = timePattern.ReplaceAllString(out, "2026-01-01T00:00:00.000Z")
	out = digestPattern.ReplaceAllString(out, `"<sha256>"`)
	out = serialPattern.ReplaceAllString(out, `"SN-1"`)
	var buf bytes.Buffer
	if err := json.Indent(&buf, []byte(out), "", "  "); err != nil {
		t.Fatalf("indent event: %v", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// TestEventPayloadsGolden drives every event the API and the pipeline
// write and compares each type's delivered body with
// testdata/events/<type>.golden (go test -run EventPayloads -update
// rewrites them).
func TestEventPayloadsGolden(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the speech engine")
	}
	for _, b := range []apitest.Backend{apitest.SQLite(), apitest.Postgres()} {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			checkEventPayloads(t, b)
		})
	}
}

func checkEventPayloads(t *testing.T, b apitest.Backend) {
	env := apitest.NewPipeline(t, b, apitest.PipelineConfig{})
	bound := env.NewBoundDevice()

	recID := env.Upload(bound.Token, "audio/opus", apitest.EncodeOpus(t, speechClip))
	env.WaitRecording(recID, 3*time.Minute, "completed")
	rec := env.Do("GET", "/v1/recordings/"+recID, env.TestKey, nil)
	txnID, _ := rec.Body["transcription_id"].(string)
	txn := env.Do("GET", "/v1/transcriptions/"+txnID, env.TestKey, nil)
	env.ExpectStatus(txn, http.StatusOK)

	badID := env.Upload(bound.Token, "audio/opus", bytes.Repeat([]byte("not audio "), 100))
	env.WaitRecording(badID, 3*time.Minute, "failed")

	env.ExpectStatus(env.Do("DELETE", "/v1/recordings/"+badID, env.TestKey, nil), http.StatusNoContent)
	env.ExpectStatus(env.Do("POST", "/v1/devices/"+bound.DeviceID+"/unbind", env.TestKey, nil), http.StatusOK)
	env.ExpectStatus(env.Do("DELETE", "/v1/end-users/"+bound.EndUserID, env.TestKey, nil),
		http.StatusNoContent)

	tenant := model.Tenant{ProjectID: env.Project.ID, Mode: "test"}
	events, _, err := env.Store.Events(context.Background(), tenant, nil, time.Time{},
		store.Page{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]*store.Event{}
	for _, e := range events {
		first[e.Type] = e // newest first, so the oldest of each type stays
	}

	types := []string{"device.bound", "recording.created", "recording.uploaded",
		"transcription.started", "transcription.completed", "transcription.failed",
		"recording.deleted", "device.unbound", "end_user.deleted"}
	for _, typ := range types {
		e := first[typ]
		if e == nil {
			t.Errorf("no %s event was written", typ)
			continue
		}
		body, err := webhook.EventBody(e)
		if err != nil {
			t.Fatal(err)
		}
		compareGolden(t, filepath.Join("testdata", "events", typ+".golden"), normalizeEvent(t, body))
	}

	// A transcription event carries the transcription as GET returns it,
	// without segments and words.
	if e := first["transcription.completed"]; e != nil {
		var data map[string]any
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatal(err)
		}
		want := txn.Body
		delete(want, "segments")
		delete(want, "words")
		if _, ok := data["segments"]; ok {
			t.Error("transcription.completed carries segments")
		}
		if !reflect.DeepEqual(data, want) {
			t.Errorf("transcription.completed data differs from GET without segments:\n%v\n%v", data, want)
		}
		if s, _ := data["text"].(string); s == "" {
			t.Error("transcription.completed carries no text")
		}
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the delivered body:\n--- got\n%s--- want\n%s", path, got, want)
	}
}
