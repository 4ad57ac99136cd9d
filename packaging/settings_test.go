package packaging

import (
	"bufio"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// setting is one edgemc setting as the config file documents it.
type setting struct {
	name string
	// def is the default as a TOML value; "" when it is computed at start
	// (from the host name), in which case the file shows an example.
	def string
}

// settings lists every edgemc setting with its default.
var settings = []setting{
	{"id", ""},
	{"region", `"local"`},
	{"data-dir", `"./edgemc-data"`},
	{"webtransport-listen", `":4433"`},
	{"webtransport-advertise", ""},
	{"grpc-listen", `":50052"`},
	{"grpc-advertise", ""},
	{"http-listen", `"127.0.0.1:8081"`},
	{"gc-url", `""`},
	{"gc-token-file", `""`},
	{"jwks-url", `""`},
	{"jwt-public-key", `""`},
	{"max-meetings", "1000"},
	{"max-participants", "10000"},
	{"tls-cert", `""`},
	{"tls-key", `""`},
	{"drain-timeout", `"30s"`},
	{"disconnect-grace", `"30s"`},
	{"status-token-file", `""`},
	{"binding-secret-file", `""`},
	{"log-format", `"auto"`},
	{"log-level", `"info"`},
}

// packageDataDir is the data-dir the package sets, the unit's state directory.
const packageDataDir = "/var/lib/edgemc"

func readSource(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var assignment = regexp.MustCompile(`^(#?)([a-z-]+) = (.*)$`)

// TestConfigFile checks that edgemc.toml shows every setting commented out
// with its default, sets only data-dir, and is valid TOML either way.
func TestConfigFile(t *testing.T) {
	src := readSource(t, "edgemc.toml")

	var active map[string]any
	if _, err := toml.Decode(src, &active); err != nil {
		t.Fatalf("edgemc.toml: %v", err)
	}
	if want := map[string]any{"data-dir": packageDataDir}; !reflect.DeepEqual(active, want) {
		t.Errorf("edgemc.toml sets %v, want only %v", active, want)
	}

	shown := map[string]string{} // name → value as written
	var uncommented strings.Builder
	sc := bufio.NewScanner(strings.NewReader(src))
	for sc.Scan() {
		m := assignment.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if _, dup := shown[m[2]]; dup {
			t.Errorf("edgemc.toml shows %s twice", m[2])
		}
		shown[m[2]] = m[3]
		if m[1] == "#" {
			uncommented.WriteString(m[2] + " = " + m[3] + "\n")
		}
	}
	// Uncommented, the examples must be valid TOML of the right types.
	var all map[string]any
	if _, err := toml.Decode(uncommented.String(), &all); err != nil {
		t.Errorf("commented settings are not valid TOML: %v", err)
	}

	for _, s := range settings {
		got, ok := shown[s.name]
		switch {
		case !ok:
			t.Errorf("edgemc.toml does not show %s", s.name)
		case s.name == "data-dir":
			if got != `"`+packageDataDir+`"` || !strings.Contains(src, "Default: "+s.def) {
				t.Errorf("data-dir = %s, want %q with its default %s in a comment", got, packageDataDir, s.def)
			}
		case s.def == "":
			if !strings.Contains(src, "Default: ") {
				t.Errorf("%s: no default described", s.name)
			}
		case got != s.def:
			t.Errorf("edgemc.toml shows %s = %s, want the default %s", s.name, got, s.def)
		}
		delete(shown, s.name)
	}
	for name := range shown {
		t.Errorf("edgemc.toml shows unknown setting %s", name)
	}
}

// TestManPage checks that edgemc.1 documents every setting with its default.
func TestManPage(t *testing.T) {
	src := readSource(t, "edgemc.1")
	entries := strings.Split(src, "\n.TP\n")
	for _, s := range settings {
		flag := `\-\-` + strings.ReplaceAll(s.name, "-", `\-`)
		var entry string
		for _, e := range entries {
			if strings.HasPrefix(e, ".BI "+flag+" ") {
				entry = e
				break
			}
		}
		if entry == "" {
			t.Errorf("edgemc.1 has no entry for --%s", s.name)
			continue
		}
		if !strings.Contains(entry, "Default") {
			t.Errorf("edgemc.1: --%s entry gives no default", s.name)
		}
	}
	for _, word := range []string{"EDGEMC_", "SIGTERM", "/etc/edgemc/edgemc.toml", "/etc/edgemc/edgemc.env", packageDataDir} {
		if !strings.Contains(src, strings.ReplaceAll(word, "-", `\-`)) {
			t.Errorf("edgemc.1 does not mention %s", word)
		}
	}
}

// TestEnvFile checks that edgemc.env only names real settings.
func TestEnvFile(t *testing.T) {
	known := map[string]bool{}
	for _, s := range settings {
		known["EDGEMC_"+strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))] = true
	}
	vars := regexp.MustCompile(`(?m)^#?(EDGEMC_[A-Z_]+)=`).FindAllStringSubmatch(readSource(t, "edgemc.env"), -1)
	if len(vars) == 0 {
		t.Fatal("edgemc.env shows no variable")
	}
	for _, v := range vars {
		if !known[v[1]] {
			t.Errorf("edgemc.env names %s, which is no setting", v[1])
		}
	}
}
