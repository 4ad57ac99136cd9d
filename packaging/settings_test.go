package packaging

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/edgemc/edgemc/appliance"
)

// packageDataDir is the data-dir the package sets, the unit's state directory.
const packageDataDir = "/var/lib/edgemc"

// hostPlaceholder stands for the host name in a default (see appliance.SettingInfo).
const hostPlaceholder = "<host>"

func readSource(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tomlLiteral is a setting's default as the config file writes it.
func tomlLiteral(def string) string {
	if _, err := strconv.ParseUint(def, 10, 32); err == nil || def == "true" || def == "false" {
		return def
	}
	return strconv.Quote(def)
}

func settingDefault(t *testing.T, name string) string {
	t.Helper()
	for _, s := range appliance.Settings() {
		if s.Name == name {
			return s.Default
		}
	}
	t.Fatalf("edgemc has no setting %s", name)
	return ""
}

var assignment = regexp.MustCompile(`^(#?)([a-z-]+) = (.*)$`)

// TestConfigFile checks that edgemc.toml shows every setting of edgemc
// commented out with its default and sets only data-dir.
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
		uncommented.WriteString(m[2] + " = " + m[3] + "\n")
	}

	for _, s := range appliance.Settings() {
		got, ok := shown[s.Name]
		delete(shown, s.Name)
		switch {
		case !ok:
			t.Errorf("edgemc.toml does not show %s", s.Name)
		case strings.Contains(s.Default, hostPlaceholder) || s.Name == "data-dir":
			// An example (or the package's value) is shown; the default is in the comment.
			if !strings.Contains(src, "Default: "+tomlLiteral(s.Default)) {
				t.Errorf("edgemc.toml: %s: no comment saying Default: %s", s.Name, tomlLiteral(s.Default))
			}
		case got == "[]" && s.Default == "":
			// An empty list.
		case got != tomlLiteral(s.Default):
			t.Errorf("edgemc.toml shows %s = %s, want the default %s", s.Name, got, tomlLiteral(s.Default))
		}
	}
	for name := range shown {
		t.Errorf("edgemc.toml shows %s, which is no setting of edgemc", name)
	}

	// edgemc itself loads the file with every line uncommented, and the
	// result is its defaults but for the shown examples.
	dir := t.TempDir()
	load := func(name, body string) appliance.Config {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		noEnv := func(string) string { return "" }
		cfg, err := appliance.LoadConfig(flag.NewFlagSet(name, flag.ContinueOnError), []string{"--config", path}, noEnv, nil)
		if err != nil {
			t.Fatalf("edgemc cannot load %s: %v", name, err)
		}
		cfg.ConfigFile, cfg.Given = "", nil
		return cfg
	}
	defaults := load("empty.toml", "")
	load("edgemc.toml", src)
	all := load("uncommented.toml", uncommented.String())
	all.ID, all.WebTransportAdvertise, all.GRPCAdvertise, all.DataDir = defaults.ID, defaults.WebTransportAdvertise, defaults.GRPCAdvertise, defaults.DataDir
	if !reflect.DeepEqual(all, defaults) {
		t.Errorf("edgemc.toml uncommented loads as\n%+v\nnot the defaults\n%+v", all, defaults)
	}
}

// TestManPage checks that edgemc.1 documents every setting with its default.
func TestManPage(t *testing.T) {
	roff := func(s string) string { return strings.ReplaceAll(s, "-", `\-`) }
	src := readSource(t, "edgemc.1")
	entries := strings.Split(src, "\n.TP\n")
	for _, s := range appliance.Settings() {
		var entry string
		for _, e := range entries {
			if strings.HasPrefix(e, ".BI "+roff("--"+s.Name)+" ") {
				entry = e
				break
			}
		}
		want := "Default"
		if s.Default != "" && !strings.Contains(s.Default, hostPlaceholder) {
			want = roff(s.Default)
		}
		if entry == "" {
			t.Errorf("edgemc.1 has no entry for --%s", s.Name)
		} else if !strings.Contains(entry, "Default") || !strings.Contains(entry, want) {
			t.Errorf("edgemc.1: --%s entry does not give its default %s:\n%s", s.Name, want, entry)
		}
	}
	for _, word := range []string{"EDGEMC_", "SIGTERM", "/etc/edgemc/edgemc.toml", "/etc/edgemc/edgemc.env", packageDataDir} {
		if !strings.Contains(src, roff(word)) {
			t.Errorf("edgemc.1 does not mention %s", word)
		}
	}
}

// TestEnvFile checks that edgemc.env only names real settings.
func TestEnvFile(t *testing.T) {
	known := map[string]bool{}
	for _, s := range appliance.Settings() {
		known[s.Env] = true
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
