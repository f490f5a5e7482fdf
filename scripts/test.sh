#!/usr/bin/env bash
# Runs go vet and the whole test suite against one throwaway PostgreSQL
# cluster shared by every test binary.
# Usage: scripts/test.sh [go test flags] [packages]
#   scripts/test.sh -short
#   scripts/test.sh -run TestRecordings ./internal/api/...
# Packages default to ./... . With CI=true the script sets BOTA_TEST_SMALL=1,
# which tests read to scale heavy cases down.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/deps.sh --test

gobin=$(go env GOBIN)
[[ -n "$gobin" ]] || gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"

if [[ "${CI:-}" == "true" ]]; then
	export BOTA_TEST_SMALL=1
fi

# Arguments that start with ./ or ../ are packages, which go test finds among
# its flags on its own. Without any, vet and test ./... .
named=()
for arg in "$@"; do
	if [[ "$arg" == ./* || "$arg" == ../* ]]; then
		named+=("$arg")
	fi
done
packages=(./...)
vet_packages=(./...)
if ((${#named[@]} > 0)); then
	packages=()
	vet_packages=("${named[@]}")
fi

work=$(mktemp -d)
pg_pid=""

# File descriptor 9 is the cluster's stdin. Closing it makes the cluster stop
# the server and remove its folder, and if this script is killed outright the
# pipe closes all the same. Commands run with 9>&- so that nothing they leave
# running keeps the pipe open.
cleanup() {
	local status=$?
	if [[ -n "$pg_pid" ]]; then
		exec 9>&-
		local waited=0
		while kill -0 "$pg_pid" 2>/dev/null && ((waited < 300)); do
			sleep 0.1
			waited=$((waited + 1))
		done
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n "${BOTA_TEST_DATABASE_URL:-}" ]]; then
	echo "test.sh: using PostgreSQL from BOTA_TEST_DATABASE_URL"
else
	go build -o "$work/pgcluster" ./internal/testenv/cmd/pgcluster
	exec 9> >(exec "$work/pgcluster" >"$work/pg.url" 2>"$work/pg.log")
	pg_pid=$!
	for _ in $(seq 1 1200); do
		[[ -s "$work/pg.url" ]] && break
		kill -0 "$pg_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [[ ! -s "$work/pg.url" ]]; then
		cat "$work/pg.log" >&2
		echo "test.sh: FAIL: could not start PostgreSQL for the tests" >&2
		exit 1
	fi
	BOTA_TEST_DATABASE_URL=$(head -n 1 "$work/pg.url")
	export BOTA_TEST_DATABASE_URL
	echo "test.sh: PostgreSQL at $BOTA_TEST_DATABASE_URL"
fi

vet_status=0
go vet "${vet_packages[@]}" 9>&- || vet_status=$?

test_status=0
go test -race -count=1 -timeout 40m "$@" "${packages[@]}" 9>&- || test_status=$?

if ((vet_status != 0 || test_status != 0)); then
	echo "test.sh: FAIL (go vet exit $vet_status, go test exit $test_status)"
	exit 1
fi
echo "test.sh: PASS (go vet and go test)"
