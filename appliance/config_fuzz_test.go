package appliance

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadConfigTOML feeds arbitrary bytes as the config file: loading must
// never panic, and any error must be a one-line *SettingError.
func FuzzLoadConfigTOML(f *testing.F) {
	for _, seed := range []string{
		"",
		"region = 'eu'\nmax-meetings = 10\ndrain-timeout = \"5s\"\n",
		"http-listen = \"127.0.0.1:0\"\nwebtransport-advertise = 'https://mc.example:4433/'\n",
		"max-meetings = 4294967296\n",
		"max-meetings = -1\n",
		"max-participants = 1e3\n",
		"[server]\nport = 1\n",
		"[region]\nx = 1\n",
		"region = [1, 2]\n",
		"Region = 'x'\n",
		"region = 'a'\nregion = 'b'\n",
		"\"\" = 1\n",
		"a.b.c = 1\n",
		"log-level = 'debug'\nlog-format = \"json\"\n",
		"tls-cert = '/nonexistent'\n",
		"gc-backoff-base = '1h'\n",
		"id = \"\\u0000\"\n",
		"region = \"\"\"\nmulti\nline\"\"\"\n",
		"[[region]]\n",
		"date = 1979-05-27T07:32:00Z\n",
		"allow-plaintext-control-plane = true\ngc-url = 'http://gc.example.net'\n",
		"gc-url = 'http://gc.example.net'\n",
		"service-token-subjects = ['gc-1', 'gc-2']\n",
		"service-token-subjects = [1, 'x,y']\n",
		"grpc-tls-cert = '/nonexistent'\ngrpc-tls-key = '/nonexistent'\n",
		"grpc-advertise = 'https://mc:1'\n",
	} {
		f.Add([]byte(seed))
	}
	path := filepath.Join(f.TempDir(), "edgemc.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fs := flag.NewFlagSet("edgemc", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c, err := loadConfig(fs, []string{"--config", path}, func(string) string { return "" }, nil, "fuzzhost", "")
		if err != nil {
			var se *SettingError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is %T, not *SettingError", err, err)
			}
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("error is not one line: %q", msg)
			}
			return
		}
		if c.ConfigFile != path || c.MaxMeetings == 0 || c.DrainTimeout <= 0 || c.ID == "" {
			t.Fatalf("accepted config is invalid: %+v", c)
		}
	})
}
