package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sipanchor/config"
	"sipanchor/sip"
	"sipanchor/store"
)

func cmdConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "defaults":
		_, _ = stdout.Write(config.Defaults())
		return 0
	case "check":
		fs := flag.NewFlagSet("config check", flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("c", "", "config file to check")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if *path == "" {
			fmt.Fprintln(stderr, "sipanchor config check: -c FILE is required")
			return 2
		}
		if _, err := loadConfig(*path); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok\n", *path)
		return 0
	}
	fmt.Fprintf(stderr, "sipanchor config: unknown subcommand %q\n%s", args[0], usage)
	return 2
}

// cmdCtl: `ctl user` works on the database named by the config, so users
// can be managed whether or not sipanchor is running (SQLite WAL lets both
// use the file).
func cmdCtl(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "user" {
		return cmdCtlAPI(args, stdout, stderr)
	}
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	sub := args[1]
	fs := flag.NewFlagSet("ctl user", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "config file (for the database path and realm)")
	var pos []string
	rest := args[2:]
	for len(rest) > 0 { // positional arguments and flags in any order
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		rest = fs.Args()
		if len(rest) > 0 {
			pos = append(pos, rest[0])
			rest = rest[1:]
		}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx := context.Background()
	db, err := store.Open(ctx, cfg.Store.Path)
	if err != nil {
		fmt.Fprintln(stderr, "sipanchor ctl:", err)
		return 1
	}
	defer db.Close()
	userDomain := func() (string, string, bool) {
		if len(pos) == 0 {
			return "", "", false
		}
		u, d, ok := strings.Cut(pos[0], "@")
		return u, strings.ToLower(d), ok && u != "" && d != ""
	}
	switch sub {
	case "add":
		u, d, ok := userDomain()
		if !ok || len(pos) != 2 {
			fmt.Fprintln(stderr, "usage: sipanchor ctl user add USER@DOMAIN PASSWORD [-c FILE]")
			return 2
		}
		realm := cfg.Registrar.Realm
		if realm == "" {
			realm = d
		}
		if err := sip.AddUser(ctx, db, u, d, realm, pos[1]); err != nil {
			fmt.Fprintln(stderr, "sipanchor ctl:", err)
			return 1
		}
		fmt.Fprintf(stdout, "user %s@%s added (realm %q)\n", u, d, realm)
	case "del":
		u, d, ok := userDomain()
		if !ok || len(pos) != 1 {
			fmt.Fprintln(stderr, "usage: sipanchor ctl user del USER@DOMAIN [-c FILE]")
			return 2
		}
		found, err := sip.DeleteUser(ctx, db, u, d)
		if err != nil {
			fmt.Fprintln(stderr, "sipanchor ctl:", err)
			return 1
		}
		if !found {
			fmt.Fprintf(stderr, "sipanchor ctl: no user %s@%s\n", u, d)
			return 1
		}
		fmt.Fprintf(stdout, "user %s@%s deleted\n", u, d)
	case "list":
		us, err := sip.ListUsers(ctx, db)
		if err != nil {
			fmt.Fprintln(stderr, "sipanchor ctl:", err)
			return 1
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tDOMAIN\tREALM")
		for _, u := range us {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Username, u.Domain, u.Realm)
		}
		tw.Flush()
	default:
		fmt.Fprintf(stderr, "sipanchor ctl user: unknown subcommand %q\n", sub)
		return 2
	}
	return 0
}
