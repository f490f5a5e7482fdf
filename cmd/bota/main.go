// Command bota is a self-hosted server for the Bota API: devices, end
// users, recordings, transcription and webhooks.
//
// Usage:
//
//	bota serve [flags]            run the HTTP server
//	bota migrate [flags]          apply database migrations
//	bota project create NAME      create a project with a test and a live key
//	bota key create|list|revoke   manage API keys
//	bota simulate [flags]         play a fleet of devices against a server
//	bota bench [flags]            measure the server against baselines
//	bota options                  print the settings table
//
// Every command reads the data dir and database URL from the same flags
// and environment variables; run "bota COMMAND -h" for its flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/botaserver/bota/internal/config"
)

const usage = `bota: a self-hosted server for the Bota API

Usage:
  bota serve [flags]                          run the HTTP server
  bota migrate [flags]                        apply database migrations
  bota project create NAME [--json]           create a project with a test and a live key
  bota key create --project ID --mode test|live [--scopes a:b,...] [--json]
  bota key list --project ID [--json]
  bota key revoke KEY_ID
  bota simulate [flags]                       play a fleet of devices against a server
  bota bench [--out FILE] [--only a,b] [--small]  measure the server against baselines
  bota options                                print every setting as a Markdown table

Run "bota COMMAND -h" for the flags of a command.
`

// errUsage marks a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "bota:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr, getenv)
	case "migrate":
		return migrate(ctx, args[1:], stdout, stderr, getenv)
	case "project":
		return projectCommand(ctx, args[1:], stdout, stderr, getenv)
	case "key":
		return keyCommand(ctx, args[1:], stdout, stderr, getenv)
	case "simulate":
		return simulate(ctx, args[1:], stdout, stderr, getenv)
	case "bench":
		return benchCommand(ctx, args[1:], stdout, stderr)
	case "options":
		config.WriteTable(stdout)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "bota: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

// parseFlags parses a command's flags (flags may follow positional
// arguments) and returns the resolved config and the positional arguments.
func parseFlags(fs *flag.FlagSet, command string, args []string, getenv func(string) string) (*config.Config, []string, error) {
	resolve := config.Bind(fs, command, getenv)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, nil, err
			}
			return nil, nil, errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	cfg, err := resolve()
	if err != nil {
		fmt.Fprintln(fs.Output(), "bota:", err)
		return nil, nil, errUsage
	}
	return cfg, positional, nil
}

// unexpectedArgument reports the first argument a command did not take.
// A true or false right after a flag is a boolean value written with a
// space, which Go's flag package reads as an argument, so the message
// shows the form it accepts.
func unexpectedArgument(stderr io.Writer, command string, args, rest []string) {
	arg := rest[0]
	if _, err := strconv.ParseBool(arg); err == nil {
		for i := 1; i < len(args); i++ {
			if args[i] == arg && strings.HasPrefix(args[i-1], "-") && !strings.Contains(args[i-1], "=") {
				fmt.Fprintf(stderr, "bota %s: unexpected argument %q; write a boolean flag's value with =, as in %s=%s\n",
					command, arg, args[i-1], arg)
				return
			}
		}
	}
	fmt.Fprintf(stderr, "bota %s: unexpected argument %q\n", command, arg)
}
