package testenv_test

import (
	"context"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/botaserver/bota/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopAll()
	os.Exit(code)
}

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", dbURL, err)
	}
	t.Cleanup(func() {
		if err := conn.Close(context.Background()); err != nil {
			t.Errorf("close connection: %v", err)
		}
	})
	return conn
}

func TestPostgresURLDatabasesAreSeparate(t *testing.T) {
	ctx := context.Background()
	firstURL := testenv.PostgresURL(t)
	secondURL := testenv.PostgresURL(t)

	if firstURL == secondURL {
		t.Fatalf("two calls returned the same URL %s", firstURL)
	}
	first := connect(t, firstURL)
	second := connect(t, secondURL)

	if _, err := first.Exec(ctx, "CREATE TABLE notes (body text NOT NULL)"); err != nil {
		t.Fatalf("create table in first database: %v", err)
	}
	if _, err := first.Exec(ctx, "INSERT INTO notes VALUES ('hello')"); err != nil {
		t.Fatalf("insert into first database: %v", err)
	}
	var body string
	if err := first.QueryRow(ctx, "SELECT body FROM notes").Scan(&body); err != nil {
		t.Fatalf("read back from first database: %v", err)
	}
	if body != "hello" {
		t.Errorf("first database: body = %q, want %q", body, "hello")
	}

	var tables int
	err := second.QueryRow(ctx,
		"SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables)
	if err != nil {
		t.Fatalf("count tables in second database: %v", err)
	}
	if tables != 0 {
		t.Errorf("second database has %d public tables, want 0", tables)
	}

	var firstName, secondName string
	if err := first.QueryRow(ctx, "SELECT current_database()").Scan(&firstName); err != nil {
		t.Fatalf("first database name: %v", err)
	}
	if err := second.QueryRow(ctx, "SELECT current_database()").Scan(&secondName); err != nil {
		t.Fatalf("second database name: %v", err)
	}
	if firstName == secondName {
		t.Errorf("both connections use database %q", firstName)
	}
}

func TestPostgresURLDropsDatabaseOnCleanup(t *testing.T) {
	var dbURL string
	t.Run("create", func(t *testing.T) {
		dbURL = testenv.PostgresURL(t)
		// An open connection must not stop the drop at cleanup.
		connect(t, dbURL)
	})

	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("parse %s: %v", dbURL, err)
	}
	name := u.Path[1:]
	u.Path = "/postgres"
	admin := connect(t, u.String())

	var exists bool
	err = admin.QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		t.Fatalf("look up database %s: %v", name, err)
	}
	if exists {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestPostgresURLParallel(t *testing.T) {
	for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			conn := connect(t, testenv.PostgresURL(t))
			if _, err := conn.Exec(context.Background(), "CREATE TABLE t (id int)"); err != nil {
				t.Fatalf("create table: %v", err)
			}
		})
	}
}

func TestStartPostgresClusterStop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second cluster; skipped with -short")
	}
	dbURL, stop, err := testenv.StartPostgresCluster()
	if err != nil {
		t.Fatalf("StartPostgresCluster: %v", err)
	}
	t.Cleanup(stop)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", dbURL, err)
	}
	var version string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		t.Fatalf("server_version: %v", err)
	}
	var fsync string
	if err := conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	if fsync != "off" {
		t.Errorf("fsync = %q, want off", fsync)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}

	stop()
	stop() // a second call must be harmless

	_, err = pgx.Connect(ctx, dbURL)
	if err == nil {
		t.Fatalf("connect after stop succeeded, want an error")
	}
}
