#!/usr/bin/env bash
# Installs the system programs bota and its tests use, when they are missing.
# Usage: scripts/deps.sh [--test]
#   Without --test: what the server runs with (ffmpeg, pocketsphinx, its model).
#   --test  also the tools, speech and databases the tests use, and versitygw
#           (the S3 server they run) with go install.
# Debian packages need root; a second run finds everything and prints one line.
set -euo pipefail

want_test=0
for arg in "$@"; do
	case "$arg" in
	--test) want_test=1 ;;
	*)
		echo "deps.sh: unknown argument $arg (expected --test)" >&2
		exit 2
		;;
	esac
done

versitygw_module=github.com/versity/versitygw/cmd/versitygw@v1.8.0

# Go installs binaries into GOBIN, or GOPATH/bin when GOBIN is unset.
if command -v go >/dev/null; then
	gobin=$(go env GOBIN)
	[[ -n "$gobin" ]] || gobin="$(go env GOPATH)/bin"
	export PATH="$gobin:$PATH"
else
	echo "deps.sh: go not found on PATH; install Go 1.26 or later first" >&2
	exit 1
fi

has_command() { command -v "$1" >/dev/null 2>&1; }

has_postgres() {
	local bin
	for bin in /usr/lib/postgresql/*/bin; do
		[[ -x "$bin/initdb" && -x "$bin/pg_ctl" ]] && return 0
	done
	has_command initdb && has_command pg_ctl
}

# Each Debian package with the file or command that shows it is installed.
missing=()
has_command ffmpeg && has_command ffprobe || missing+=(ffmpeg)
has_command pocketsphinx_continuous || missing+=(pocketsphinx)
[[ -f /usr/share/pocketsphinx/model/en-us/en-us/mdef ]] || missing+=(pocketsphinx-en-us)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
if ((want_test)); then
	has_command sox || missing+=(sox)
	[[ -f /usr/share/pocketsphinx/test/data/librivox/transcription ]] ||
		missing+=(pocketsphinx-testdata)
	has_postgres && id -u postgres >/dev/null 2>&1 || missing+=(postgresql)
	has_command sctk || missing+=(sctk)
	has_command wrk || missing+=(wrk)
fi

need_versitygw=0
if ((want_test)) && ! has_command versitygw; then
	need_versitygw=1
fi

if ((${#missing[@]} == 0 && need_versitygw == 0)); then
	echo "deps.sh: all dependencies present"
	exit 0
fi

if ((${#missing[@]} > 0)); then
	if ((EUID != 0)); then
		echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
		echo "deps.sh: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	echo "deps.sh: installing ${missing[*]}"
	log=$(mktemp)
	export DEBIAN_FRONTEND=noninteractive
	if ! { apt-get update -q && apt-get install -y -q \
		"${missing[@]}"; } >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		echo "deps.sh: apt-get failed (full log: $log)" >&2
		exit 1
	fi
	rm -f "$log"
fi

if ((need_versitygw)); then
	echo "deps.sh: building versitygw into $gobin (about a minute)"
	log=$(mktemp)
	if ! go install "$versitygw_module" >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		echo "deps.sh: go install $versitygw_module failed (full log: $log)" >&2
		exit 1
	fi
	rm -f "$log"
fi
echo "deps.sh: dependencies installed"
