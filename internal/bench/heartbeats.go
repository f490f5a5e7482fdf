package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/botaserver/bota/internal/testenv"
)

// heartbeatPayload is the body every heartbeat sends: the fields a
// device reports, as the simulator sends them.
var heartbeatPayload = []byte(`{"battery_percent":81,"storage_used_mb":1200,"storage_total_mb":16384,` +
	`"signal_strength_dbm":-87,"firmware_version":"1.4.2","device_state":"idle",` +
	`"pending_recordings":0,"connection_type":["4g"]}`)

// HeartbeatRequests returns a RequestFunc that sends device heartbeats,
// turning through tokens and spreading requests over bases in turn.
func HeartbeatRequests(bases []string, tokens []string) RequestFunc {
	return func(ctx context.Context, seq int64) (*http.Request, error) {
		base := bases[int(seq)%len(bases)]
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/devices/me/heartbeat",
			bytes.NewReader(heartbeatPayload))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tokens[int(seq/int64(len(bases)))%len(tokens)])
		return req, nil
	}
}

// heartbeatLoad is the load-generator setting shared by bota and the
// baseline, so that both see the same clients.
type heartbeatLoad struct {
	conns    int
	duration time.Duration
}

// heartbeats measures authenticated heartbeats per second at saturation
// and the latency at half that rate, on SQLite and on PostgreSQL, against
// the bare handler under the same load.
func (e *env) heartbeats(ctx context.Context) error {
	// 128 clients at once, as a fleet has many devices reporting at the
	// same moment. With 32, bota's processor was partly idle at
	// "saturation" while a combined write ran.
	load := heartbeatLoad{conns: 128, duration: e.duration(10*time.Second, 3*time.Second)}
	devices := e.size(500, 50)
	rounds := e.size(3, 1)

	dir, err := e.subdir("bare")
	if err != nil {
		return err
	}
	bare, err := startBare(ctx, e.cfg.Binary, dir)
	if err != nil {
		return err
	}
	defer bare.stop()
	bareTokens := make([]string, devices)
	for i := range bareTokens {
		bareTokens[i] = fmt.Sprintf("dt_bare_%d", i)
	}

	for _, engine := range []string{"SQLite", "PostgreSQL"} {
		opts, err := e.serverOptions(ctx, engine == "PostgreSQL")
		if err != nil {
			return err
		}
		srv, err := startBota(ctx, e.cfg.Binary, opts, nil)
		if err != nil {
			return err
		}
		err = e.heartbeatsOn(ctx, srv, engine, load, devices, rounds, bare, bareTokens)
		srv.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", engine, err)
		}
	}
	e.report.note("heartbeats: %d keep-alive connections, %s per phase, %d device tokens; "+
		"saturation rates are medians of %d rounds that alternate bota and the bare handler; "+
		"latency measured open-loop at half of bota's saturation rate, the baseline at that same rate",
		load.conns, load.duration, devices, rounds)
	return nil
}

func (e *env) heartbeatsOn(ctx context.Context, srv *botaServer, engine string, load heartbeatLoad,
	devices, rounds int, bare *process, bareTokens []string) error {
	client := NewClient(8)
	defer client.CloseIdleConnections()
	devs, err := srv.api(client).createDevices(ctx, devices, "hb")
	if err != nil {
		return err
	}
	tokens := make([]string, len(devs))
	for i, d := range devs {
		tokens[i] = d.Token
	}

	// The machine's speed drifts during a run, so bota and the bare
	// handler take turns and each figure is a median.
	var botaRates, bareRates []float64
	for round := range rounds {
		err := inTurn(round,
			func() error {
				res, err := saturate(ctx, load, []string{srv.URL()}, tokens)
				botaRates = append(botaRates, res.Rate)
				return err
			},
			func() error {
				res, err := saturate(ctx, load, []string{bare.URL()}, bareTokens)
				bareRates = append(bareRates, res.Rate)
				if err != nil {
					return fmt.Errorf("bare handler: %w", err)
				}
				return nil
			})
		if err != nil {
			return err
		}
	}
	rate, bareRate := median(botaRates), median(bareRates)
	e.log.Info("HeartbeatSaturation", "engine", engine, "rates", botaRates, "bare_rates", bareRates)

	half := rate / 2
	paced, err := pace(ctx, load, half, []string{srv.URL()}, tokens)
	if err != nil {
		return err
	}
	barePaced, err := pace(ctx, load, half, []string{bare.URL()}, bareTokens)
	if err != nil {
		return fmt.Errorf("bare handler: %w", err)
	}

	r := e.report
	r.add(goal(Figure{Benchmark: Heartbeats, Name: "heartbeats/s at saturation, " + engine, Unit: "req/s",
		Value: rate, Baseline: "bare net/http handler", BaselineValue: bareRate, HigherIsBetter: true},
		"≥ 0.5 × baseline", rate >= 0.5*bareRate))
	r.add(Figure{Benchmark: Heartbeats, Name: fmt.Sprintf("p50 at %.0f req/s, %s", half, engine), Unit: "ms",
		Value: paced.P50, Baseline: "bare handler, same rate", BaselineValue: barePaced.P50})
	r.add(Figure{Benchmark: Heartbeats, Name: fmt.Sprintf("p99 at %.0f req/s, %s", half, engine), Unit: "ms",
		Value: paced.P99, Baseline: "bare handler, same rate", BaselineValue: barePaced.P99})
	return nil
}

// saturate warms up for a second, then measures the rate at saturation.
func saturate(ctx context.Context, load heartbeatLoad, bases, tokens []string) (LoadResult, error) {
	client := NewClient(load.conns)
	defer client.CloseIdleConnections()
	next := HeartbeatRequests(bases, tokens)
	Saturate(ctx, client, load.conns, time.Second, next)
	res := Saturate(ctx, client, load.conns, load.duration, next)
	if res.Errors > 0 {
		return res, fmt.Errorf("%d of %d heartbeats failed; first: %s", res.Errors, res.Requests, res.FirstError)
	}
	return res, nil
}

func pace(ctx context.Context, load heartbeatLoad, rate float64, bases, tokens []string) (LoadResult, error) {
	client := NewClient(load.conns)
	defer client.CloseIdleConnections()
	res := Paced(ctx, client, load.conns, rate, load.duration, HeartbeatRequests(bases, tokens))
	if res.Errors > 0 {
		return res, fmt.Errorf("%d of %d heartbeats failed; first: %s", res.Errors, res.Requests, res.FirstError)
	}
	return res, nil
}

// serverOptions returns a fresh data dir and, for PostgreSQL, a fresh
// database on the run's cluster, which starts on first use.
func (e *env) serverOptions(ctx context.Context, postgres bool) (serverOptions, error) {
	dir, err := e.subdir("data")
	if err != nil {
		return serverOptions{}, err
	}
	opts := serverOptions{DataDir: dir}
	if !postgres {
		return opts, nil
	}
	if e.postgresURL == "" {
		e.log.Info("PostgresStarting")
		clusterURL, stop, err := testenv.StartPostgresCluster()
		if err != nil {
			return opts, fmt.Errorf("start PostgreSQL: %w", err)
		}
		e.postgresURL, e.stopPostgres = clusterURL, stop
		e.report.note("PostgreSQL: a throwaway cluster on this machine with fsync=off")
	}
	e.databases++
	name := fmt.Sprintf("bench_%d", e.databases)
	conn, err := pgx.Connect(ctx, e.postgresURL)
	if err != nil {
		return opts, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return opts, fmt.Errorf("create database %s: %w", name, err)
	}
	opts.DatabaseURL, err = withDatabase(e.postgresURL, name)
	return opts, err
}

// withDatabase returns the postgres:// URL rawURL with its database set
// to name.
func withDatabase(rawURL, name string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("invalid database URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}
