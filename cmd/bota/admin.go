package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

func migrate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("bota migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, _, err := parseFlags(fs, "migrate", args, getenv)
	if err != nil {
		return err
	}
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	v, err := db.store.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database %s is at schema version %d\n", db.where, v)
	return nil
}

func projectCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, "usage: bota project create NAME [--json]")
		return errUsage
	}
	fs := flag.NewFlagSet("bota project create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print machine-readable JSON, including the new secrets")
	cfg, rest, err := parseFlags(fs, "project", args[1:], getenv)
	if err != nil {
		return err
	}
	if len(rest) != 1 || strings.TrimSpace(rest[0]) == "" {
		fmt.Fprintln(stderr, "usage: bota project create NAME [--json]")
		return errUsage
	}
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintf(stderr, "bota: using database %s\n", db.where)

	p, keys, secrets, err := api.CreateProjectWithKeys(ctx, db.store, rest[0])
	if err != nil {
		return err
	}

	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{
			"id": p.ID, "name": p.Name,
			"test_key": secrets[0], "live_key": secrets[1],
			"keys": []any{keyOut(keys[0], secrets[0]), keyOut(keys[1], secrets[1])},
		})
	}
	fmt.Fprintf(stdout, "project %s (%s)\n", p.ID, p.Name)
	fmt.Fprintf(stdout, "test key: %s\n", secrets[0])
	fmt.Fprintf(stdout, "live key: %s\n", secrets[1])
	fmt.Fprintln(stdout, "The keys are shown only now; store them safely.")
	return nil
}

func keyOut(k *model.APIKey, secret string) map[string]any {
	out := map[string]any{
		"id": k.ID, "project_id": k.ProjectID, "mode": k.Mode, "restricted": k.Restricted,
		"scopes": k.Scopes, "name": k.Name, "hint": k.Hint, "revoked": k.RevokedAt != nil,
	}
	if out["scopes"] == nil {
		out["scopes"] = []string{}
	}
	if secret != "" {
		out["secret"] = secret
	}
	return out
}

func keyCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	const keyUsage = "usage: bota key create --project ID --mode test|live [--scopes a:b,...] [--name NAME] [--json]\n" +
		"       bota key list --project ID [--json]\n       bota key revoke KEY_ID"
	if len(args) == 0 {
		fmt.Fprintln(stderr, keyUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("bota key "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	project := fs.String("project", "", "project id (proj_...)")
	mode := fs.String("mode", "", "test or live")
	scopes := fs.String("scopes", "", "comma-separated scopes; any scope makes a restricted rk_ key")
	name := fs.String("name", "", "a name to tell the key apart")
	asJSON := fs.Bool("json", false, "print machine-readable JSON")
	cfg, rest, err := parseFlags(fs, "key", args[1:], getenv)
	if err != nil {
		return err
	}
	db, err := openExistingDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintf(stderr, "bota: using database %s\n", db.where)

	switch args[0] {
	case "create":
		scopesSet := false
		fs.Visit(func(f *flag.Flag) { scopesSet = scopesSet || f.Name == "scopes" })
		return keyCreate(ctx, db.store, *project, *mode, *scopes, scopesSet, *name, *asJSON, stdout, stderr)
	case "list":
		return keyList(ctx, db.store, *project, *asJSON, stdout, stderr)
	case "revoke":
		if len(rest) != 1 {
			fmt.Fprintln(stderr, keyUsage)
			return errUsage
		}
		k, err := db.store.RevokeAPIKey(ctx, rest[0])
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no API key with id %s", rest[0])
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s (%s)\n", k.ID, k.Hint)
		return nil
	}
	fmt.Fprintln(stderr, keyUsage)
	return errUsage
}

func keyCreate(ctx context.Context, st *store.Store, project, mode, scopeList string, scopesSet bool, name string, asJSON bool, stdout, stderr io.Writer) error {
	if !ids.Valid(ids.Project, project) {
		fmt.Fprintf(stderr, "bota key create: --project must be a project id (proj_...), got %q\n", project)
		return errUsage
	}
	if mode != model.ModeTest && mode != model.ModeLive {
		fmt.Fprintf(stderr, "bota key create: --mode must be test or live, got %q\n", mode)
		return errUsage
	}
	var scopes []string
	for _, s := range strings.Split(scopeList, ",") {
		if s = strings.TrimSpace(s); s != "" {
			scopes = append(scopes, s)
		}
	}
	if scopesSet && len(scopes) == 0 {
		fmt.Fprintln(stderr, "bota key create: --scopes must name at least one scope; omit it for a secret key")
		return errUsage
	}
	if err := api.ValidateScopes(scopes); err != nil {
		return err
	}
	if _, err := st.Project(ctx, project); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no project with id %s", project)
	} else if err != nil {
		return err
	}
	if name == "" {
		name = mode + " key"
	}
	k, secret := auth.NewAPIKey(project, mode, name, scopes)
	if err := st.CreateAPIKey(ctx, k, ids.Hash(secret)); err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(keyOut(k, secret))
	}
	fmt.Fprintf(stdout, "key %s\nsecret: %s\nThe secret is shown only now; store it safely.\n", k.ID, secret)
	return nil
}

func keyList(ctx context.Context, st *store.Store, project string, asJSON bool, stdout, stderr io.Writer) error {
	if project == "" {
		fmt.Fprintln(stderr, "bota key list: --project is required")
		return errUsage
	}
	if _, err := st.Project(ctx, project); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no project with id %s", project)
	} else if err != nil {
		return err
	}
	keys, err := st.APIKeys(ctx, project)
	if err != nil {
		return err
	}
	if asJSON {
		out := make([]any, 0, len(keys))
		for _, k := range keys {
			out = append(out, keyOut(k, ""))
		}
		return json.NewEncoder(stdout).Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMODE\tTYPE\tHINT\tSCOPES\tSTATUS")
	for _, k := range keys {
		typ, status := "secret", "active"
		if k.Restricted {
			typ = "restricted"
		}
		if k.RevokedAt != nil {
			status = "revoked"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Mode, typ, k.Hint, strings.Join(k.Scopes, ","), status)
	}
	return tw.Flush()
}
