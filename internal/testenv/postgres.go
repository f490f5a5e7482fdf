package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
)

// DatabaseURLEnv names the environment variable that points the tests at an
// existing PostgreSQL server. Its value is a postgres:// URL of a role that
// may run CREATE DATABASE, for example postgres://bota@127.0.0.1:5432/postgres.
const DatabaseURLEnv = "BOTA_TEST_DATABASE_URL"

// adminTimeout bounds each CREATE DATABASE or DROP DATABASE round trip.
const adminTimeout = 60 * time.Second

// cluster is the throwaway cluster this process started, when
// DatabaseURLEnv is unset. A mutex rather than sync.Once guards it so that
// a call after StopAll starts a fresh cluster instead of returning a dead URL.
var cluster struct {
	mu   sync.Mutex
	url  string
	stop func()
}

// PostgresURL creates an empty database for this test and returns its
// postgres:// URL. The database lives on the server named by DatabaseURLEnv
// or, when that is unset, on a cluster that the first call in this process
// starts and StopAll stops. t.Cleanup drops the database, closing any
// connection a test left open. PostgresURL fails the test when PostgreSQL
// cannot be reached or started; it never skips.
func PostgresURL(t testing.TB) string {
	t.Helper()

	adminURL, err := postgresAdminURL()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}

	name, err := newDatabaseName(t.Name())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dbURL, err := replaceDatabase(adminURL, name)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	// template0 does not accept connections (datallowconn is false), so
	// concurrent calls cannot fail with "source database is being accessed
	// by other users", as copies of template1 can.
	create := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE template0"
	if err := execAdmin(ctx, adminURL, create); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		// WITH (FORCE) needs PostgreSQL 13 or later.
		drop := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"
		if err := execAdmin(ctx, adminURL, drop); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	return dbURL
}

// postgresAdminURL returns the URL of a role that may create databases,
// starting this process's cluster on first use when DatabaseURLEnv is unset.
func postgresAdminURL() (string, error) {
	if v := os.Getenv(DatabaseURLEnv); v != "" {
		if _, err := replaceDatabase(v, "postgres"); err != nil {
			return "", fmt.Errorf("%s: %w", DatabaseURLEnv, err)
		}
		return v, nil
	}

	cluster.mu.Lock()
	defer cluster.mu.Unlock()
	if cluster.url != "" {
		return cluster.url, nil
	}

	clusterURL, stop, err := StartPostgresCluster()
	if err != nil {
		return "", fmt.Errorf("start PostgreSQL (or set %s): %w", DatabaseURLEnv, err)
	}
	cluster.url = clusterURL
	cluster.stop = stop
	registerStop(func() {
		cluster.mu.Lock()
		defer cluster.mu.Unlock()
		cluster.stop()
		cluster.url = ""
		cluster.stop = nil
	})
	return clusterURL, nil
}

// execAdmin runs one statement on its own connection. CREATE DATABASE cannot
// run inside a transaction, and a short-lived connection leaves nothing open
// that would block a later DROP DATABASE.
func execAdmin(ctx context.Context, adminURL, sql string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redactURL(adminURL), err)
	}
	_, execErr := conn.Exec(ctx, sql)
	closeErr := conn.Close(ctx)
	return errors.Join(execErr, closeErr)
}

// newDatabaseName builds a unique database name that starts with the test's
// name, so a leftover database shows which test made it. The name stays
// under 63 bytes, where PostgreSQL truncates identifiers.
func newDatabaseName(testName string) (string, error) {
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", fmt.Errorf("random database name: %w", err)
	}

	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 32 {
			break
		}
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return "bota_" + b.String() + "_" + hex.EncodeToString(suffix[:]), nil
}

// replaceDatabase returns rawURL with its database (the URL path) set to name.
func replaceDatabase(rawURL, name string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("invalid database URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", fmt.Errorf("invalid database URL %q: expected postgres://user@host:port/db",
			redactURL(rawURL))
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

// redactURL hides the password of a URL that goes into an error message.
func redactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
