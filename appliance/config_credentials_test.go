package appliance

import (
	"strings"
	"testing"
)

// edgemc's own credentials are a fixed token or the Auth Controller's client
// credentials, never both; a GC link needs one of them.
func TestCredentialSettings(t *testing.T) {
	secret := writeCfgFile(t, "client-secret", "s3cr3t-value")
	token := writeCfgFile(t, "gc-token", "fixed-token")
	ac := []string{"--ac-url", "https://ac.example:8082", "--client-id", "mc-1", "--client-secret-file", secret}
	gc := []string{"--gc-url", "https://gc.example:50051"}

	for _, args := range [][]string{
		nil,
		ac,
		append(append([]string{}, gc...), ac...),
		append(append([]string{}, gc...), "--gc-token-file", token),
		{"--gc-token-file", token},
	} {
		if _, err := loadCfg(t, args, cfgEnv{}, ""); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	c, _ := loadCfg(t, ac, cfgEnv{}, "")
	if c.ACURL != "https://ac.example:8082" || c.ClientID != "mc-1" || c.ClientSecretFile != secret {
		t.Errorf("config %+v", c)
	}

	_, err := loadCfg(t, gc, cfgEnv{}, "")
	checkOneLine(t, err, "gc-url", "needs edgemc's credentials")
	_, err = loadCfg(t, append(append([]string{}, ac...), "--gc-token-file", token), cfgEnv{}, "")
	checkOneLine(t, err, "gc-token-file", "must not be set with ac-url")
	_, err = loadCfg(t, []string{"--ac-url", "https://ac.example"}, cfgEnv{}, "")
	checkOneLine(t, err, "client-id", "must be set when ac-url is")
	_, err = loadCfg(t, []string{"--client-id", "mc-1", "--client-secret-file", secret}, cfgEnv{}, "")
	checkOneLine(t, err, "ac-url", "must be set when client-id and client-secret-file are")
	_, err = loadCfg(t, []string{"--ac-url", "ftp://ac"}, cfgEnv{}, "")
	checkOneLine(t, err, "ac-url", "http:// or https:// URL")

	// The secret file's path is checked, its contents never shown.
	_, err = loadCfg(t, []string{"--ac-url", "https://ac", "--client-id", "c", "--client-secret-file", "s3cr3t-value"}, cfgEnv{}, "")
	checkOneLine(t, err, "client-secret-file", "no such file")
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error echoes the value: %v", err)
	}
}
