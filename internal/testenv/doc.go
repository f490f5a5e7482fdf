// Package testenv starts the outside servers that integration tests run
// against: a throwaway PostgreSQL cluster and an S3 server.
//
// PostgresURL gives each caller a new empty database. It uses the server
// named by BOTA_TEST_DATABASE_URL when that is set (scripts/test.sh starts one
// cluster for the whole run and sets it), and otherwise starts a cluster once
// per test binary from the Debian package postgresql. Servers started once
// per binary outlive single tests, so a package that uses them stops them in
// TestMain:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		testenv.StopAll()
//		os.Exit(code)
//	}
//
// A binary killed before StopAll runs, for example by go test -timeout,
// leaves its cluster behind. The next cluster started on the machine stops
// and removes it.
package testenv
