package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/edgemc/edgemc/appliance"
	"github.com/edgemc/edgemc/cmd/edgemc/internal/loadgen"
)

// writeUsage is `edgemc help`: every command and every setting, enough to
// stand in for a man page.
func writeUsage(w io.Writer) {
	fmt.Fprint(w, `edgemc is a Meeting Controller appliance for Dark Tower video conferencing.

Usage:
`)
	writeCommands(w)
	fmt.Fprint(w, `
`)
	writeSettings(w)
	fmt.Fprint(w, `
Signals:
  SIGTERM or SIGINT starts a drain (edgemc reports DRAINING and refuses new
  meetings), waits up to drain-timeout, then stops; a second signal exits at
  once.

Logs:
  Structured (log/slog) on standard error: text on a terminal, JSON otherwise
  (log-format auto). Under systemd, entries go to the journal with their
  priority and every attribute as a field: journalctl -u edgemc -p warning,
  journalctl -u edgemc MEETING=<id>. Tokens and secrets are never logged;
  secret settings are files, and only their paths are shown.

Exit status:
  0 clean stop, 1 runtime failure, 2 usage or configuration error (one line on
  standard error naming the setting; nothing is created before the
  configuration is checked).
`)
}

func writeCommands(w io.Writer) {
	width := 0
	for _, c := range commands() {
		width = max(width, len(c.name)+1+len(c.args))
	}
	for _, c := range commands() {
		fmt.Fprintf(w, "  edgemc %-*s  %s\n", width, strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
}

// writeSettings lists every setting with its flag, environment variable,
// default and help, advanced ones last.
func writeSettings(w io.Writer) {
	fmt.Fprint(w, `Settings (serve, lab, cert-hash):
  Each setting is a flag --NAME, an environment variable EDGEMC_NAME (upper
  case, '-' becomes '_') and a key NAME in the TOML configuration file. A flag
  beats the environment, which beats the file, which beats the default. An
  empty environment variable counts as unset. <host> is this machine's host
  name. An unknown key in the file is an error; an unknown EDGEMC_ variable
  is a warning.

`)
	config := appliance.SettingInfo{Name: "config", Env: "EDGEMC_CONFIG", Default: appliance.DefaultConfigFile + " when it exists",
		Help: `the TOML configuration file, e.g.  max-meetings = 500  region = "eu-west"`}
	all := append([]appliance.SettingInfo{config}, appliance.Settings()...)
	nameW, envW := 0, 0
	for _, s := range all {
		nameW, envW = max(nameW, len(s.Name)), max(envW, len(s.Env))
	}
	line := func(s appliance.SettingInfo) {
		def := s.Default
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(w, "  --%-*s  %-*s  default %s\n      %s\n", nameW, s.Name, envW, s.Env, def, s.Help)
	}
	for _, s := range all {
		if !s.Advanced {
			line(s)
		}
	}
	fmt.Fprint(w, "\nAdvanced settings (testing and tuning):\n")
	for _, s := range all {
		if s.Advanced {
			line(s)
		}
	}
}

// writeCommandHelp is `edgemc help NAME` and `edgemc NAME -h`.
func writeCommandHelp(w io.Writer, name string) {
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		fmt.Fprintf(w, "Usage: edgemc %s\n  %s\n\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	switch name {
	case "serve", "lab", "cert-hash":
		writeSettings(w)
	case "client":
		fs := flag.NewFlagSet("edgemc client join", flag.ContinueOnError)
		var (
			o              appliance.ClientJoinOptions
			tokenFile, lab string
		)
		clientFlags(fs, &o, &tokenFile, &lab)
		fmt.Fprintln(w, "Options of client join:")
		writeFlags(w, fs)
	case "loadgen":
		var (
			cfg loadgen.Config
			f   loadgenFlags
		)
		fmt.Fprintln(w, "Options:")
		writeFlags(w, loadgenFlagSet(&cfg, &f))
	}
}

// writeFlags lists the flags of fs in the --name spelling of edgemc's help.
func writeFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if kind != "" {
			fmt.Fprintf(w, " %s", kind)
		}
		fmt.Fprintf(w, "\n      %s", usage)
		switch {
		case f.DefValue == "" || f.DefValue == "false" || f.DefValue == "0":
		case strings.ContainsRune(f.DefValue, ' '):
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		default:
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
