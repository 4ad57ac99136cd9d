package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/edgemc/edgemc/appliance"
)

// TestConfigErrorLeavesNothing runs the real binary with a configuration it
// cannot use, in each log format: one line on stderr naming the setting,
// exit 2, nothing logged before and nothing created in the directory.
func TestConfigErrorLeavesNothing(t *testing.T) {
	badKey := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(badKey, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		format string
		args   []string
		want   string
	}{
		{"json", []string{"serve"}, "edgemc: missing setting jwks-url: set jwks-url (or jwt-public-key) so that join tokens can be verified\n"},
		{"text", []string{"serve"}, "edgemc: missing setting jwks-url: "},
		{"auto", []string{"serve", "--jwt-public-key=" + badKey}, "edgemc: invalid setting jwt-public-key: "},
		{"json", []string{"serve", "--jwks-url=https://ac.example.net/jwks", "--status-token-file=/dev/null"}, "edgemc: invalid setting status-token-file: names an empty file"},
	} {
		t.Run(tc.format+" "+strings.Join(tc.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			p := startEdgemcIn(t, dir, tc.args, "EDGEMC_LOG_FORMAT="+tc.format)
			if code := p.Wait(); code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if got := p.stderrText(); !strings.HasPrefix(got, tc.want) || strings.Count(got, "\n") != 1 {
				t.Errorf("stderr %q, want one line starting %q", got, tc.want)
			}
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if !slices.Equal(names, []string{"edgemc.toml"}) { // the harness's empty config file
				t.Errorf("the failed start left %q in its directory", names)
			}
		})
	}
}

// TestNoConfigPointsToLab: with no configuration at all, the error also
// says how to try edgemc out.
func TestNoConfigPointsToLab(t *testing.T) {
	if _, err := os.Stat(appliance.DefaultConfigFile); err == nil {
		t.Skipf("%s exists on this machine: edgemc would read it", appliance.DefaultConfigFile)
	}
	t.Chdir(t.TempDir())
	code, _, errOut := runCLI(t, nil, "serve")
	if code != exitUsage || !strings.HasSuffix(errOut, `; to try edgemc on this machine without a Dark Tower deployment, run "edgemc lab"`+"\n") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat("edgemc-data"); err == nil {
		t.Error("./edgemc-data was created")
	}
	// Any setting counts as configuration: then the line names the setting only.
	if _, _, errOut := runCLI(t, map[string]string{"EDGEMC_REGION": "eu"}, "serve"); strings.Contains(errOut, "edgemc lab") {
		t.Errorf("configured: stderr %q still points to edgemc lab", errOut)
	}
}

// TestFlagErrors: flag mistakes are answered in the --name spelling of the
// help, on one line, with exit 2.
func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--bogus-flag"}, "edgemc: serve: unknown flag --bogus-flag (edgemc help serve lists them)\n"},
		{[]string{"cert-hash", "-bogus"}, "edgemc: cert-hash: unknown flag --bogus (edgemc help cert-hash lists them)\n"},
		{[]string{"client", "join", "--bogus"}, "edgemc: client join: unknown flag --bogus (edgemc help client lists them)\n"},
		{[]string{"client", "join", "--url"}, "edgemc: client join: --url needs a value\n"},
		{[]string{"client", "join", "--timeout=soon"}, `edgemc: client join: invalid value "soon" for --timeout` + "\n"},
		{[]string{"client", "join", "--insecure=maybe"}, `edgemc: client join: invalid value "maybe" for --insecure` + "\n"},
		{[]string{"client", "join", "--timeout=a -b"}, `edgemc: client join: invalid value "a -b" for --timeout` + "\n"},
		{[]string{"loadgen", "--sessions=99999999999999999999"}, `edgemc: loadgen: invalid value "99999999999999999999" for --sessions: value out of range` + "\n"},
		{[]string{"loadgen", "--bogus"}, "edgemc: loadgen: unknown flag --bogus (edgemc help loadgen lists them)\n"},
		{[]string{"client", "join", "--lab=http://127.0.0.1:1", "--meeting=m"}, "edgemc: client join: --lab gives the URL, meeting and token"},
	} {
		code, out, errOut := runCLI(t, emptyConfig(t), tc.args...)
		if code != exitUsage || !strings.HasPrefix(errOut, tc.want) || strings.Count(errOut, "\n") != 1 || out != "" {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
}

// TestHelpSpellsFlagsWithTwoDashes: every option in the help of client join
// and loadgen is spelled --name, as edgemc's settings are.
func TestHelpSpellsFlagsWithTwoDashes(t *testing.T) {
	for _, args := range [][]string{{"client", "join", "--help"}, {"help", "client"}, {"loadgen", "-h"}, {"help", "loadgen"}} {
		code, out, _ := runCLI(t, nil, args...)
		if code != exitOK || !strings.Contains(out, "\n  --url ") {
			t.Errorf("%v: exit %d, output %q", args, code, out)
		}
		for line := range strings.Lines(out) {
			if strings.HasPrefix(strings.TrimSpace(line), "-") && !strings.HasPrefix(strings.TrimSpace(line), "--") {
				t.Errorf("%v: single-dash option %q", args, line)
			}
		}
	}
}

// TestClientJoinLab joins a real `edgemc lab` with `client join --lab`, then
// interrupts the client as Ctrl-C would: it says it is leaving (not the
// server's drain wording), exits 0, and the lab sees a voluntary leave.
func TestClientJoinLab(t *testing.T) {
	lab := startEdgemc(t, append([]string{"lab"}, loopbackArgs()...))
	base := "http://" + lab.WaitReady().Str("http")
	lab.WaitLog("the demo meeting", func(l logLine) bool { return l.Msg() == "meeting assigned" })

	// The client's first line is the JoinResponse; then it is interrupted.
	client := exec.Command(edgemcBin, "client", "join", "--lab="+base, "--name=Carol")
	client.Env = cleanEnv()
	var errOut bytes.Buffer
	client.Stderr = &errOut
	stdout, err := client.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Process.Kill(); client.Wait() })
	first, err := bufio.NewReader(stdout).ReadString('\n')
	if !strings.Contains(first, `"join_response"`) || strings.Contains(first, "eyJ") {
		t.Fatalf("client's first line %q (%v), want the JoinResponse without the token", first, err)
	}
	client.Process.Signal(syscall.SIGINT)
	io.Copy(io.Discard, stdout) // until the client exits
	if err := client.Wait(); err != nil {
		t.Errorf("client after Ctrl-C: %v, want exit 0", err)
	}
	if got := errOut.String(); !strings.Contains(got, "signal received: leaving the meeting") || strings.Contains(got, "drain") {
		t.Errorf("client stderr %q", got)
	}
	lab.WaitLog("Carol's leave", func(l logLine) bool { return l.Msg() == "participant left" && l.Str("reason") == "VOLUNTARY" })
	if code := lab.Stop(); code != exitOK {
		t.Errorf("lab exit %d", code)
	}
}
