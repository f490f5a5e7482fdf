package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

// readsConns is the number of connections of the read benchmarks.
const readsConns = 16

// pagedWalkers is the number of clients walking filtered pages at once.
const pagedWalkers = 4

// readsFixture is a loaded database and the values the reads filter on.
type readsFixture struct {
	proj    project
	devices []string
	sample  []string
}

var readStatuses = []string{model.RecordingUploaded, model.RecordingCompleted, model.RecordingProcessing,
	model.RecordingFailed, model.RecordingPending}

// reads measures list and get throughput and the p99 of filtered, cursor
// paged lists with many recordings in the database, on SQLite and on
// PostgreSQL.
func (e *env) reads(ctx context.Context) error {
	rows := e.size(100_000, 10_000)
	d := e.duration(10*time.Second, 2*time.Second)
	dir, err := e.subdir("bare")
	if err != nil {
		return err
	}
	bare, err := startBare(ctx, e.cfg.Binary, dir)
	if err != nil {
		return err
	}
	defer bare.stop()
	for _, engine := range []string{"SQLite", "PostgreSQL"} {
		opts, err := e.serverOptions(ctx, engine == "PostgreSQL")
		if err != nil {
			return err
		}
		if err := e.readsOn(ctx, engine, opts, rows, d, bare); err != nil {
			return fmt.Errorf("%s: %w", engine, err)
		}
	}
	e.report.note("reads: %d recordings with one media each in one project, %d devices; list pages of 25; "+
		"%d connections for throughput; %d clients walking pages filtered by device_id or status for p99; "+
		"the store baseline runs the same page queries in process, without HTTP",
		rows, e.size(100, 20), readsConns, pagedWalkers)
	return nil
}

func (e *env) readsOn(ctx context.Context, engine string, opts serverOptions, rows int, d time.Duration,
	bare *process) error {
	st, closeStore, err := openStore(ctx, opts)
	if err != nil {
		return err
	}
	defer closeStore()
	start := time.Now()
	fx, err := loadRecordings(ctx, st, rows, e.size(100, 20))
	if err != nil {
		return err
	}
	e.log.Info("RecordingsLoaded", "engine", engine, "rows", rows, "duration", time.Since(start).String())
	if engine == "PostgreSQL" {
		// Autovacuum gathers statistics about a minute after a bulk load
		// (autovacuum_naptime). The measurement starts sooner, so it
		// gathers them itself rather than race autovacuum.
		if _, err := st.DB().ExecContext(ctx, "ANALYZE"); err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
	}

	srv, err := startBota(ctx, e.cfg.Binary, opts, &fx.proj)
	if err != nil {
		return err
	}
	defer srv.stop()
	client := NewClient(readsConns)
	defer client.CloseIdleConnections()

	get := func(path string) RequestFunc {
		return func(ctx context.Context, seq int64) (*http.Request, error) {
			if path == "" {
				return authorized(ctx, srv.URL()+"/v1/recordings/"+fx.sample[int(seq)%len(fx.sample)], srv.Key)
			}
			return authorized(ctx, srv.URL()+path, srv.Key)
		}
	}
	bareGet := func(ctx context.Context, _ int64) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, bare.URL()+"/body", nil)
	}

	cases := []struct {
		name   string
		sample string
		next   RequestFunc
	}{
		{"list, 25 per page", "/v1/recordings", get("/v1/recordings")},
		{"get by id", "/v1/recordings/" + fx.sample[0], get("")},
	}
	for _, c := range cases {
		body, err := fetch(ctx, client, srv.URL()+c.sample, srv.Key)
		if err != nil {
			return err
		}
		if err := putBody(ctx, bare.URL(), body); err != nil {
			return err
		}
		Saturate(ctx, client, readsConns, time.Second, c.next)
		res := Saturate(ctx, client, readsConns, d, c.next)
		if res.Errors > 0 {
			return fmt.Errorf("%s: %d of %d requests failed; first: %s", c.name, res.Errors, res.Requests,
				res.FirstError)
		}
		base := Saturate(ctx, client, readsConns, d, bareGet)
		e.report.add(Figure{Benchmark: Reads, Name: fmt.Sprintf("%s, %s, %d rows", c.name, engine, rows),
			Unit: "req/s", Value: res.Rate, Baseline: "bare handler, same bytes", BaselineValue: base.Rate,
			HigherIsBetter: true})
	}

	paged, err := walkPagesHTTP(ctx, client, srv, fx, d)
	if err != nil {
		return err
	}
	direct, err := walkPagesStore(ctx, st, fx, d)
	if err != nil {
		return err
	}
	e.report.add(goal(Figure{Benchmark: Reads,
		Name: fmt.Sprintf("p99 of filtered cursor pages, %s, %d rows", engine, rows), Unit: "ms",
		Value: paged.P99, Baseline: "store called directly", BaselineValue: direct.P99},
		"< 20 ms", paged.P99 < 20))
	return nil
}

// loadRecordings creates a project, devices and rows recordings (each
// with one uploaded media) through the store, in transactions of 5,000.
func loadRecordings(ctx context.Context, st *store.Store, rows, devices int) (*readsFixture, error) {
	proj, err := createProjectIn(ctx, st)
	if err != nil {
		return nil, err
	}
	tenant := model.Tenant{ProjectID: proj.ID, Mode: model.ModeTest}
	fx := &readsFixture{proj: proj}
	// Rows get created_at one millisecond apart, ending now.
	clock := time.Now().Add(-time.Duration(rows*3) * time.Millisecond)
	st.Now = func() time.Time {
		clock = clock.Add(time.Millisecond)
		return clock
	}
	defer func() { st.Now = time.Now }()
	users := make([]string, devices)
	err = st.InTx(ctx, func(tx *store.Store) error {
		for i := range devices {
			ext := fmt.Sprintf("reader-%d", i)
			u := &model.EndUser{Tenant: tenant, ExternalID: &ext}
			if err := tx.CreateEndUser(ctx, u); err != nil {
				return err
			}
			d, _, err := tx.RegisterDevice(ctx, &model.Device{Tenant: tenant, SerialNumber: ext, Model: "bota_pin"})
			if err != nil {
				return err
			}
			users[i] = u.ID
			fx.devices = append(fx.devices, d.ID)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create devices: %w", err)
	}
	const batch = 5000
	for from := 0; from < rows; from += batch {
		err := st.InTx(ctx, func(tx *store.Store) error {
			for i := from; i < min(from+batch, rows); i++ {
				k := i % devices
				r := &model.Recording{Tenant: tenant, DeviceID: &fx.devices[k], EndUserID: &users[k],
					Status: readStatuses[i%len(readStatuses)], Source: "device", Metadata: map[string]any{}}
				if err := tx.CreateRecording(ctx, r); err != nil {
					return err
				}
				size := int64(480_000)
				m := &model.Media{ID: ids.New(ids.Media), RecordingID: r.ID, Tenant: tenant, Type: "audio",
					MimeType: "audio/opus", Status: model.MediaUploaded, StorageKey: "bench/" + r.ID,
					FileSizeBytes: &size, URLExpiresAt: clock.Add(time.Hour)}
				if err := tx.CreateMedia(ctx, m); err != nil {
					return err
				}
				if i%(rows/1000+1) == 0 {
					fx.sample = append(fx.sample, r.ID)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("insert recordings: %w", err)
		}
	}
	return fx, nil
}

// pageFilter is the n-th filter the page walkers use: a device or a status.
func pageFilter(fx *readsFixture, n int) (query url.Values, filter store.RecordingFilter) {
	query = url.Values{}
	if n%2 == 0 {
		dev := fx.devices[n/2%len(fx.devices)]
		query.Set("device_id", dev)
		filter.DeviceID = &dev
	} else {
		status := readStatuses[n/2%len(readStatuses)]
		query.Set("status", status)
		filter.Status = &status
	}
	return query, filter
}

// maxPagesWalked bounds a walk, so that walkers cover many filters.
const maxPagesWalked = 20

// walkPagesHTTP runs pagedWalkers clients for d, each walking filtered
// lists page by page with next_cursor, and returns the page latencies.
func walkPagesHTTP(ctx context.Context, client *http.Client, srv *botaServer, fx *readsFixture,
	d time.Duration) (LoadResult, error) {
	return walk(ctx, d, func(ctx context.Context, n int, rec *recorder) []time.Duration {
		query, _ := pageFilter(fx, n)
		var local []time.Duration
		for range maxPagesWalked {
			t0 := time.Now()
			body, err := fetch(ctx, client, srv.URL()+"/v1/recordings?"+query.Encode(), srv.Key)
			if err != nil {
				if ctx.Err() == nil {
					rec.fail(err)
				}
				return local
			}
			local = append(local, time.Since(t0))
			rec.ok.Add(1)
			var page struct {
				NextCursor *string `json:"next_cursor"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				rec.fail(err)
				return local
			}
			if page.NextCursor == nil {
				return local
			}
			query.Set("cursor", *page.NextCursor)
		}
		return local
	})
}

// walkPagesStore walks the same filtered pages through the store.
func walkPagesStore(ctx context.Context, st *store.Store, fx *readsFixture, d time.Duration) (LoadResult, error) {
	tenant := model.Tenant{ProjectID: fx.proj.ID, Mode: model.ModeTest}
	return walk(ctx, d, func(ctx context.Context, n int, rec *recorder) []time.Duration {
		_, filter := pageFilter(fx, n)
		page := store.Page{Limit: 25}
		var local []time.Duration
		for range maxPagesWalked {
			t0 := time.Now()
			recs, more, err := st.Recordings(ctx, tenant, filter, page)
			if err != nil {
				if ctx.Err() == nil {
					rec.fail(err)
				}
				return local
			}
			local = append(local, time.Since(t0))
			rec.ok.Add(1)
			if !more || len(recs) == 0 {
				return local
			}
			last := recs[len(recs)-1]
			page.After = &store.Position{CreatedAt: last.CreatedAt, ID: last.ID}
		}
		return local
	})
}

// walk runs pagedWalkers goroutines for d; each calls one walk after
// another with increasing filter numbers.
func walk(ctx context.Context, d time.Duration,
	one func(ctx context.Context, n int, rec *recorder) []time.Duration) (LoadResult, error) {
	var rec recorder
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range pagedWalkers {
		wg.Go(func() {
			var local []time.Duration
			for n := w; ctx.Err() == nil; n += pagedWalkers {
				local = append(local, one(ctx, n, &rec)...)
			}
			rec.add(local)
		})
	}
	wg.Wait()
	res := rec.result(time.Since(start))
	if res.Errors > 0 {
		return res, fmt.Errorf("%d of %d page reads failed; first: %s", res.Errors, res.Requests, res.FirstError)
	}
	return res, nil
}

func authorized(ctx context.Context, rawURL, key string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	return req, nil
}

// fetch sends an authorized GET and returns the body of a 200 response.
func fetch(ctx context.Context, client *http.Client, rawURL, key string) ([]byte, error) {
	req, err := authorized(ctx, rawURL, key)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", req.URL.Path, resp.StatusCode, truncate(body, 300))
	}
	return body, nil
}
