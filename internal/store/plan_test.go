package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/testenv"
)

// The plan tests run the store's own list methods against a database with
// tens of thousands of rows and ask the engine how it ran each SELECT. A
// list must read an index in the order of its ORDER BY: a full table scan
// or a sort of the whole table grows with the table and makes the API's
// paged lists slow long before the server runs out of anything else.
//
// The sqlite and postgres packages import this one, so this test opens
// the databases through their drivers with a small dialect of its own.

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopAll()
	os.Exit(code)
}

// planDialect is the part of the engines' dialects the plan tests need.
type planDialect struct {
	name string
}

func (d planDialect) Name() string { return d.name }

func (d planDialect) Rebind(q string) string {
	if d.name != "postgres" {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func (planDialect) IsUniqueViolation(error) bool { return false }

func (planDialect) MergeJSON(target, _ string) string { return target }

func (planDialect) WithMigrationLock(_ context.Context, _ *sql.DB, fn func() error) error {
	return fn()
}

// planRecorder runs every SELECT twice: once under EXPLAIN, to record its
// plan, then for real.
type planRecorder struct {
	db      *sql.DB
	dialect string

	mu    sync.Mutex
	plans []queryPlan
}

// queryPlan is one SELECT and the engine's plan for it, one node per line.
type queryPlan struct {
	query string
	plan  string
}

func (r *planRecorder) explain(ctx context.Context, query string, args ...any) {
	if !strings.HasPrefix(strings.TrimSpace(query), "SELECT") {
		return
	}
	prefix := "EXPLAIN "
	if r.dialect == "sqlite" {
		prefix = "EXPLAIN QUERY PLAN "
	}
	rows, err := r.db.QueryContext(ctx, prefix+query, args...)
	if err != nil {
		r.record(query, "EXPLAIN failed: "+err.Error())
		return
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		r.record(query, "EXPLAIN failed: "+err.Error())
		return
	}
	var lines []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			r.record(query, "EXPLAIN failed: "+err.Error())
			return
		}
		// SQLite's detail is the last column; PostgreSQL returns one.
		lines = append(lines, fmt.Sprint(vals[len(vals)-1]))
	}
	r.record(query, strings.Join(lines, "\n"))
}

func (r *planRecorder) record(query, plan string) {
	r.mu.Lock()
	r.plans = append(r.plans, queryPlan{query: query, plan: plan})
	r.mu.Unlock()
}

// take returns the plans recorded since the last call.
func (r *planRecorder) take() []queryPlan {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.plans
	r.plans = nil
	return p
}

func (r *planRecorder) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return r.db.ExecContext(ctx, q, args...)
}

func (r *planRecorder) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	r.explain(ctx, q, args...)
	return r.db.QueryContext(ctx, q, args...)
}

func (r *planRecorder) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	r.explain(ctx, q, args...)
	return r.db.QueryRowContext(ctx, q, args...)
}

// planFixture is a loaded database and the ids the list cases filter on.
type planFixture struct {
	store     *Store
	recorder  *planRecorder
	tenant    model.Tenant
	deviceID  string
	endUserID string
	recording *model.Recording
}

// Sizes of the loaded tables. PostgreSQL's planner picks a sequential
// scan on small tables, where it is cheaper, so the tables must be big
// enough for an index to win.
const (
	planRecordings     = 20_000
	planDevices        = 5_000
	planEndUsers       = 5_000
	planTranscriptions = 8_000
	planProjects       = 4
)

// loadPlanFixture migrates db and fills it: most rows in one tenant, the
// rest spread over the other projects and modes.
func loadPlanFixture(t *testing.T, db *sql.DB, dialect string) *planFixture {
	t.Helper()
	ctx := context.Background()
	st := New(db, planDialect{name: dialect})
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	// Each row gets its own created_at, one millisecond apart.
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	st.Now = func() time.Time {
		clock = clock.Add(time.Millisecond)
		return clock
	}

	fx := &planFixture{store: st}
	statuses := []string{model.RecordingPending, model.RecordingUploaded, model.RecordingProcessing,
		model.RecordingCompleted, model.RecordingFailed}
	start := time.Now()
	err := st.InTx(ctx, func(tx *Store) error {
		var tenants []model.Tenant
		for i := range planProjects {
			p, err := tx.CreateProject(ctx, fmt.Sprintf("plan %d", i))
			if err != nil {
				return err
			}
			tenants = append(tenants, model.Tenant{ProjectID: p.ID, Mode: model.ModeTest},
				model.Tenant{ProjectID: p.ID, Mode: model.ModeLive})
		}
		fx.tenant = tenants[0]
		// Seven rows in ten go to the tested tenant.
		tenantOf := func(i int) model.Tenant {
			if i%10 < 7 {
				return tenants[0]
			}
			return tenants[1+i%(len(tenants)-1)]
		}

		users := make([]string, planEndUsers)
		for i := range users {
			ext := fmt.Sprintf("user-%d", i)
			email := fmt.Sprintf("user%d@example.com", i)
			u := &model.EndUser{Tenant: tenantOf(i), ExternalID: &ext, Email: &email}
			if err := tx.CreateEndUser(ctx, u); err != nil {
				return err
			}
			users[i] = u.ID
		}
		devices := make([]string, planDevices)
		for i := range devices {
			d := &model.Device{Tenant: tenantOf(i), SerialNumber: fmt.Sprintf("SN-%d", i), Model: "bota_pin"}
			stored, _, err := tx.RegisterDevice(ctx, d)
			if err != nil {
				return err
			}
			devices[i] = stored.ID
		}
		fx.deviceID, fx.endUserID = devices[0], users[0]
		for i := range planRecordings {
			// Device i%planDevices and end user i%planEndUsers are in
			// the recording's tenant, because both follow tenantOf.
			k := i % planDevices
			r := &model.Recording{Tenant: tenantOf(k), DeviceID: &devices[k], EndUserID: &users[k],
				Status: statuses[i%len(statuses)], Source: "device"}
			if err := tx.CreateRecording(ctx, r); err != nil {
				return err
			}
			if i == 0 {
				fx.recording = r
			}
			m := &model.Media{ID: ids.New(ids.Media), RecordingID: r.ID, Tenant: r.Tenant, Type: "audio",
				MimeType: "audio/opus", Status: model.MediaUploaded, StorageKey: "media/" + r.ID,
				URLExpiresAt: clock.Add(time.Hour)}
			if err := tx.CreateMedia(ctx, m); err != nil {
				return err
			}
			if i < planTranscriptions {
				tr := &model.Transcription{RecordingID: r.ID, Tenant: r.Tenant}
				if err := tx.CreateTranscription(ctx, tr); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("load rows: %v", err)
	}
	t.Logf("loaded %d recordings, %d devices, %d end users, %d transcriptions in %s",
		planRecordings, planDevices, planEndUsers, planTranscriptions, time.Since(start).Round(time.Millisecond))

	analyze := "ANALYZE"
	if _, err := db.ExecContext(ctx, analyze); err != nil {
		t.Fatalf("%s: %v", analyze, err)
	}
	fx.recorder = &planRecorder{db: db, dialect: dialect}
	st.q = fx.recorder
	return fx
}

// planCase is one store call whose SELECTs must all use indexes.
type planCase struct {
	name string
	// table is the big table the call reads.
	table string
	// ordered is set when many rows match, so the rows must come in
	// index order rather than be sorted. A filter on a unique or nearly
	// unique column leaves few rows, and sorting those is cheap.
	ordered bool
	run     func(ctx context.Context, fx *planFixture) error
}

func planCases() []planCase {
	page := Page{Limit: 20}
	str := func(s string) *string { return &s }
	status := model.RecordingCompleted
	// A cursor in the middle of the tenant's rows, as the second page of
	// a list would carry.
	cursor := func(fx *planFixture) Page {
		return Page{Limit: 20, After: &Position{CreatedAt: fx.recording.CreatedAt.Add(30 * time.Second),
			ID: "rec_zzzz"}}
	}
	return []planCase{
		{"recordings by tenant", "recordings", true, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Recordings(ctx, fx.tenant, RecordingFilter{}, page)
			return err
		}},
		{"recordings by tenant after cursor", "recordings", true, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Recordings(ctx, fx.tenant, RecordingFilter{}, cursor(fx))
			return err
		}},
		{"recordings by device", "recordings", true, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Recordings(ctx, fx.tenant, RecordingFilter{DeviceID: &fx.deviceID}, page)
			return err
		}},
		{"recordings by device after cursor", "recordings", true, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Recordings(ctx, fx.tenant, RecordingFilter{DeviceID: &fx.deviceID}, cursor(fx))
			return err
		}},
		{"recordings by end user", "recordings", true, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Recordings(ctx, fx.tenant, RecordingFilter{EndUserID: &fx.endUserID}, page)
			return err
		}},
		{"recordings by status", "recordings", true, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Recordings(ctx, fx.tenant, RecordingFilter{Status: &status}, page)
			return err
		}},
		{"recordings by status after cursor", "recordings", true, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Recordings(ctx, fx.tenant, RecordingFilter{Status: &status}, cursor(fx))
			return err
		}},
		{"recording by id", "recordings", false, func(ctx context.Context, fx *planFixture) error {
			_, err := fx.store.Recording(ctx, fx.tenant, fx.recording.ID)
			return err
		}},
		{"devices by tenant", "devices", true, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Devices(ctx, fx.tenant, DeviceFilter{}, page)
			return err
		}},
		{"devices by status", "devices", true, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Devices(ctx, fx.tenant, DeviceFilter{Status: str(model.DeviceUnbound)}, page)
			return err
		}},
		{"devices by end user", "devices", true, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Devices(ctx, fx.tenant, DeviceFilter{EndUserID: &fx.endUserID}, page)
			return err
		}},
		{"devices by serial number", "devices", false, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Devices(ctx, fx.tenant, DeviceFilter{SerialNumber: str("SN-0")}, page)
			return err
		}},
		{"end users by tenant", "end_users", true, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.EndUsers(ctx, fx.tenant, EndUserFilter{}, page)
			return err
		}},
		{"end users by external id", "end_users", false, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.EndUsers(ctx, fx.tenant, EndUserFilter{ExternalID: str("user-0")}, page)
			return err
		}},
		{"end users by email", "end_users", false, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.EndUsers(ctx, fx.tenant, EndUserFilter{Email: str("user0@example.com")}, page)
			return err
		}},
		{"transcriptions by tenant", "transcriptions", true, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Transcriptions(ctx, fx.tenant, nil, page)
			return err
		}},
		{"transcriptions by recording", "transcriptions", false, func(ctx context.Context, fx *planFixture) error {
			_, _, err := fx.store.Transcriptions(ctx, fx.tenant, &fx.recording.ID, page)
			return err
		}},
	}
}

// badPlan returns why plan reads table without a usable index, or "".
// With ordered set, a sort of the matching rows is also reported.
func badPlan(dialect, table, plan string, ordered bool) string {
	for line := range strings.SplitSeq(plan, "\n") {
		line = strings.TrimSpace(line)
		if dialect == "sqlite" {
			// "SCAN t" and "SCAN t USING INDEX i" both read every row;
			// "SEARCH t USING INDEX i (...)" reads a range.
			if strings.HasPrefix(line, "SCAN "+table) {
				return "full scan: " + line
			}
			if ordered && strings.Contains(line, "USE TEMP B-TREE FOR ORDER BY") {
				return "sorts the matching rows: " + line
			}
			continue
		}
		if strings.Contains(line, "Seq Scan on "+table) {
			return "sequential scan: " + line
		}
		if ordered && (strings.HasPrefix(line, "Sort ") || strings.Contains(line, "->  Sort ")) {
			return "sorts the matching rows: " + line
		}
	}
	return ""
}

// cursorInIndex reports whether the plan starts its index range at the
// cursor's created_at.
func cursorInIndex(dialect, plan string) bool {
	for line := range strings.SplitSeq(plan, "\n") {
		if dialect == "sqlite" && strings.HasPrefix(line, "SEARCH ") && strings.Contains(line, "created_at<") {
			return true
		}
		if dialect == "postgres" && strings.Contains(line, "Index Cond:") && strings.Contains(line, "created_at <") {
			return true
		}
	}
	return false
}

func checkPlans(t *testing.T, fx *planFixture, dialect string) {
	ctx := context.Background()
	for _, c := range planCases() {
		t.Run(c.name, func(t *testing.T) {
			fx.recorder.take()
			if err := c.run(ctx, fx); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			plans := fx.recorder.take()
			if len(plans) == 0 {
				t.Fatal("the call ran no SELECT")
			}
			for _, p := range plans {
				if strings.HasPrefix(p.plan, "EXPLAIN failed") {
					t.Errorf("%s\nquery: %s", p.plan, p.query)
					continue
				}
				// Besides the big table, a recording and a list of them
				// read their media, one page at a time.
				table, ordered := c.table, c.ordered
				if strings.Contains(p.query, "FROM media") {
					table, ordered = "media", false
				}
				t.Logf("plan of %s:\n%s", table, p.plan)
				if why := badPlan(dialect, table, p.plan, ordered); why != "" {
					t.Errorf("%s\nquery: %s\nplan:\n%s", why, p.query, p.plan)
				}
				if table == c.table && strings.HasSuffix(c.name, "after cursor") &&
					!cursorInIndex(dialect, p.plan) {
					t.Errorf("the cursor is a filter, not a bound of the index range, so a deep "+
						"page reads every newer row\nquery: %s\nplan:\n%s", p.query, p.plan)
				}
			}
		})
	}
}

func TestListQueryPlansSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plan.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	// One connection: the load transaction and the recorder share it.
	db.SetMaxOpenConns(1)
	fx := loadPlanFixture(t, db, "sqlite")
	checkPlans(t, fx, "sqlite")
}

func TestListQueryPlansPostgres(t *testing.T) {
	db, err := sql.Open("pgx", testenv.PostgresURL(t))
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	fx := loadPlanFixture(t, db, "postgres")
	checkPlans(t, fx, "postgres")
}

func TestBadPlanDetects(t *testing.T) {
	cases := []struct {
		dialect, table, plan string
		bad                  bool
	}{
		{"sqlite", "recordings", "SCAN recordings", true},
		{"sqlite", "recordings", "SCAN recordings USING INDEX recordings_list", true},
		{"sqlite", "recordings", "SEARCH recordings USING INDEX recordings_device (project_id=? AND mode=?)", false},
		{"sqlite", "recordings",
			"SEARCH recordings USING INDEX recordings_list (project_id=?)\nUSE TEMP B-TREE FOR ORDER BY", true},
		{"sqlite", "media", "SEARCH media USING INDEX media_recording (recording_id=?)", false},
		{"postgres", "recordings", "Limit\n  ->  Seq Scan on recordings  (cost=0.00..1.00 rows=1 width=1)", true},
		{"postgres", "recordings",
			"Limit\n  ->  Index Scan Backward using recordings_list on recordings  (cost=0.29..8.31)", false},
		{"postgres", "recordings", "Limit\n  ->  Sort  (cost=9.1..9.2)\n  ->  Bitmap Heap Scan on recordings", true},
	}
	for _, c := range cases {
		if got := badPlan(c.dialect, c.table, c.plan, true) != ""; got != c.bad {
			t.Errorf("badPlan(%s, %s, %q) flags = %v, want %v", c.dialect, c.table, c.plan, got, c.bad)
		}
	}
}
