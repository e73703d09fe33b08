package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

const ctlUsage = `usage: sipanchor ctl [--api URL] [--token TOKEN] [--json] COMMAND
  sessions                 anchored calls with live counters
  session CALLID           one call: per-stream stats and a media diagnosis
  update CALLID [--caller-flags F] [--callee-flags F]
                           re-anchor a call (new relay ports, re-INVITE to both ends)
  teardown CALLID          end a call: BYE to both ends
  registrations            registrar bindings
  unregister AOR           remove an AOR's bindings
  relays                   relay nodes
  relay enable|disable NODE
  reload                   reload relay nodes
  stats                    health and counters
  bans                     sources banned for flooding
  unban IP                 lift a source's ban
  user add|del|list ...    digest users (works on the database, see -c)
--api defaults to $SIPANCHOR_API or http://127.0.0.1:8080, --token to $SIPANCHOR_TOKEN.
`

// cmdCtlAPI runs the ctl commands that talk to a running sipanchor.
func cmdCtlAPI(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage) }
	api := fs.String("api", envOr("SIPANCHOR_API", "http://127.0.0.1:8080"), "API base URL")
	token := fs.String("token", os.Getenv("SIPANCHOR_TOKEN"), "bearer token")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, ctlUsage)
		return 2
	}
	c := &apiClient{base: strings.TrimRight(*api, "/"), token: *token}
	arg := func(i int, what string) (string, bool) {
		if len(rest) <= i {
			fmt.Fprintf(stderr, "sipanchor ctl %s: %s is required\n", rest[0], what)
			return "", false
		}
		return rest[i], true
	}
	var (
		method, path string
		body         any
		show         func([]byte, io.Writer) error
	)
	switch rest[0] {
	case "session", "update", "teardown":
		if _, ok := arg(1, "CALLID"); !ok {
			return 2
		}
	}
	switch rest[0] {
	case "sessions":
		method, path, show = "GET", "/api/v1/sessions", showSessions
	case "session":
		method, path, show = "GET", "/api/v1/sessions/"+url.PathEscape(rest[1]), showSession
	case "update":
		id := rest[1]
		uf := flag.NewFlagSet("ctl update", flag.ContinueOnError)
		uf.SetOutput(stderr)
		cf := uf.String("caller-flags", "", "new flags for the caller's leg (rtpengine style)")
		ef := uf.String("callee-flags", "", "new flags for the callee's leg")
		if err := uf.Parse(rest[2:]); err != nil {
			return 2
		}
		req := map[string]any{}
		uf.Visit(func(f *flag.Flag) {
			req[strings.ReplaceAll(f.Name, "-", "_")] = map[string]*string{"caller-flags": cf, "callee-flags": ef}[f.Name]
		})
		method, path, body, show = "POST", "/api/v1/sessions/"+url.PathEscape(id)+"/update", req, showSession
	case "teardown":
		method, path = "DELETE", "/api/v1/dialogs/"+url.PathEscape(rest[1])
	case "registrations":
		method, path, show = "GET", "/api/v1/registrations", showTable("AOR", "CONTACT", "EXPIRES", "RECEIVED", "TRANSPORT", "NAT")
	case "unregister":
		aor, ok := arg(1, "AOR")
		if !ok {
			return 2
		}
		method, path = "DELETE", "/api/v1/registrations/"+url.PathEscape(aor)
	case "relays":
		method, path, show = "GET", "/api/v1/relays", showTable("NODE", "ENGINE", "SET", "ENABLED", "SESSIONS", "PORT_PAIRS_USED", "PORT_PAIRS_TOTAL")
	case "relay":
		action, ok := arg(1, "enable or disable")
		if !ok {
			return 2
		}
		node, ok := arg(2, "NODE")
		if !ok {
			return 2
		}
		if action != "enable" && action != "disable" {
			fmt.Fprintf(stderr, "sipanchor ctl relay: %q: want enable or disable\n", action)
			return 2
		}
		method, path, show = "POST", "/api/v1/relays/"+url.PathEscape(node)+"/"+action, showTable("NODE", "ENGINE", "SET", "ENABLED", "SESSIONS")
	case "reload":
		method, path = "POST", "/api/v1/relays/reload"
	case "stats":
		method, path = "GET", "/api/v1/health"
	case "bans":
		method, path, show = "GET", "/api/v1/bans", showTable("IP", "SINCE", "UNTIL", "REQUESTS", "DROPPED")
	case "unban":
		ip, ok := arg(1, "IP")
		if !ok {
			return 2
		}
		method, path = "DELETE", "/api/v1/bans/"+url.PathEscape(ip)
	default:
		fmt.Fprintf(stderr, "sipanchor ctl: unknown command %q\n%s", rest[0], ctlUsage)
		return 2
	}
	out, err := c.do(method, path, body)
	if err != nil {
		fmt.Fprintln(stderr, "sipanchor ctl:", err)
		return 1
	}
	if *asJSON || show == nil {
		_, _ = stdout.Write(out)
		return 0
	}
	if err := show(out, stdout); err != nil {
		fmt.Fprintln(stderr, "sipanchor ctl:", err)
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type apiClient struct{ base, token string }

// do calls the API; a 4xx/5xx becomes an error with the API's message.
func (c *apiClient) do(method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		var e struct{ Error string }
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return out, nil
}

type sessionView struct {
	CallID  string `json:"call_id"`
	State   string `json:"state"`
	Engine  string `json:"engine"`
	Node    string `json:"node"`
	AgeS    int    `json:"age_s"`
	Streams []struct {
		Index  int `json:"index"`
		Caller struct {
			Port      int    `json:"port"`
			Latched   string `json:"latched"`
			SDPAddr   string `json:"sdp_addr"`
			PacketsIn uint64 `json:"packets_in"`
			Lost      int64  `json:"lost"`
			Strangers uint64 `json:"strangers"`
		} `json:"caller"`
		Callee struct {
			Port      int    `json:"port"`
			Latched   string `json:"latched"`
			SDPAddr   string `json:"sdp_addr"`
			PacketsIn uint64 `json:"packets_in"`
			Lost      int64  `json:"lost"`
			Strangers uint64 `json:"strangers"`
		} `json:"callee"`
	} `json:"streams"`
	Diagnosis []string `json:"diagnosis"`
}

func showSessions(b []byte, w io.Writer) error {
	var ss []sessionView
	if err := json.Unmarshal(b, &ss); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CALL-ID\tSTATE\tAGE\tCALLER PORT\tCALLER PKTS\tCALLEE PORT\tCALLEE PKTS\tNODE")
	for _, s := range ss {
		for _, st := range s.Streams {
			fmt.Fprintf(tw, "%s\t%s\t%ds\t%d\t%d\t%d\t%d\t%s\n", s.CallID, s.State, s.AgeS,
				st.Caller.Port, st.Caller.PacketsIn, st.Callee.Port, st.Callee.PacketsIn, s.Node)
		}
		if len(s.Streams) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%ds\t-\t-\t-\t-\t%s\n", s.CallID, s.State, s.AgeS, s.Node)
		}
	}
	return tw.Flush()
}

func showSession(b []byte, w io.Writer) error {
	var s sessionView
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	fmt.Fprintf(w, "call %s  state %s  age %ds  engine %s node %s\n", s.CallID, s.State, s.AgeS, s.Engine, s.Node)
	for _, st := range s.Streams {
		fmt.Fprintf(w, "stream %d\n", st.Index)
		fmt.Fprintf(w, "  caller: relay port %d, SDP %s, latched %s, %d packets in, %d lost, %d from strangers\n",
			st.Caller.Port, st.Caller.SDPAddr, orDash(st.Caller.Latched), st.Caller.PacketsIn, st.Caller.Lost, st.Caller.Strangers)
		fmt.Fprintf(w, "  callee: relay port %d, SDP %s, latched %s, %d packets in, %d lost, %d from strangers\n",
			st.Callee.Port, st.Callee.SDPAddr, orDash(st.Callee.Latched), st.Callee.PacketsIn, st.Callee.Lost, st.Callee.Strangers)
	}
	for _, d := range s.Diagnosis {
		fmt.Fprintln(w, "  -", d)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// showTable prints a JSON array of objects as a table of the named keys.
func showTable(cols ...string) func([]byte, io.Writer) error {
	return func(b []byte, w io.Writer) error {
		var rows []map[string]any
		if err := json.Unmarshal(b, &rows); err != nil {
			return errors.New("unexpected reply: " + string(b))
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
		sort.SliceStable(rows, func(i, j int) bool {
			return fmt.Sprint(rows[i][strings.ToLower(cols[0])]) < fmt.Sprint(rows[j][strings.ToLower(cols[0])])
		})
		for _, r := range rows {
			vals := make([]string, len(cols))
			for i, c := range cols {
				vals[i] = fmt.Sprint(r[strings.ToLower(c)])
			}
			fmt.Fprintln(tw, strings.Join(vals, "\t"))
		}
		return tw.Flush()
	}
}
