// Command sipanchor is a SIP proxy and registrar for user agents behind
// NAT, with its media anchored in its own process.
//
//	sipanchor serve [-c FILE]          run (embedded defaults without -c)
//	sipanchor config check -c FILE     validate a config file and exit
//	sipanchor config defaults          print the default config, commented
//	sipanchor ctl user add|del|list    manage digest users
//	sipanchor nat --type T --inside IP --public IP   a userspace NAT box for tests
//	sipanchor version
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  sipanchor serve [-c FILE]            run the proxy (embedded defaults without -c)
  sipanchor config check -c FILE       validate FILE and exit
  sipanchor config defaults            print the default configuration
  sipanchor ctl [--api URL] [--token T] [--json] sessions|session CALLID|update CALLID|teardown CALLID|
                registrations|unregister AOR|relays|relay enable|disable NODE|reload|stats
  sipanchor ctl user add USER@DOMAIN PASSWORD [-c FILE]
  sipanchor ctl user del USER@DOMAIN [-c FILE]
  sipanchor ctl user list [-c FILE]
  sipanchor nat --type full-cone|restricted-cone|port-restricted-cone|symmetric
                --inside IP[,IP...] --public IP [--timeout D] [--tcp-timeout D] [--view PREFIX]
                [--server IP:PORT ...] [--hairpin] [--no-port-preservation] [--broken-alg] [--verbose]
                                       run a userspace NAT box on loopback (no root) until SIGINT/SIGTERM
  sipanchor version
`

// run is main without the exit, for tests. It returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "ctl":
		return cmdCtl(args[1:], stdout, stderr)
	case "nat":
		return cmdNAT(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "sipanchor", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sipanchor: unknown command %q\n%s", args[0], usage)
	return 2
}
