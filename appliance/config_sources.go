package appliance

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// rawValue is a setting's value as text and where it came from.
type rawValue struct {
	text, source string
}

// defaultValue is the setting's default, with <host> replaced by host.
func defaultValue(s setting, host string) rawValue {
	return rawValue{text: strings.ReplaceAll(s.def, hostPlaceholder, host), source: "default"}
}

// envValue is the setting's environment variable, if it is set and not empty
// (an empty variable counts as unset).
func envValue(s setting, getenv func(string) string) (rawValue, bool) {
	name := envName(s.name)
	v := getenv(name)
	return rawValue{text: v, source: "env " + name}, v != ""
}

// flagValue records a flag's text; parsing waits until precedence is known.
type flagValue struct {
	text string
	set  bool
}

func (f *flagValue) String() string     { return f.text }
func (f *flagValue) Set(v string) error { f.text, f.set = v, true; return nil }

// boolFlag is a flagValue that may be given without a value.
type boolFlag struct{ *flagValue }

func (boolFlag) IsBoolFlag() bool { return true }

// flagValues are the flags LoadConfig registers: --config and one per
// setting, in table order.
type flagValues struct {
	config   *flagValue
	settings []*flagValue
}

// value is the i-th setting's flag, if it was given.
func (f flagValues) value(i int, s setting) (rawValue, bool) {
	v := f.settings[i]
	return rawValue{text: v.text, source: "flag --" + s.name}, v.set
}

// parseFlags registers --config and a flag for every setting on fs and
// parses args. The error is fs.Parse's, flag.ErrHelp included.
func parseFlags(fs *flag.FlagSet, args []string, table []setting, defaultFile string) (flagValues, error) {
	f := flagValues{config: &flagValue{}, settings: make([]*flagValue, len(table))}
	fs.Var(f.config, "config", fmt.Sprintf("TOML configuration file (env %s; default %s when it exists)", envName("config"), defaultFile))
	for i, s := range table {
		f.settings[i] = &flagValue{text: s.def}
		var v flag.Value = f.settings[i]
		if _, ok := s.field(&Config{}).(*bool); ok {
			v = boolFlag{f.settings[i]} // --name alone means true
		}
		fs.Var(v, s.name, fmt.Sprintf("%s (env %s)", s.help, envName(s.name)))
	}
	if err := fs.Parse(args); err != nil {
		return flagValues{}, err
	}
	return f, nil
}

// readConfigFile reads the TOML file named by --config, else EDGEMC_CONFIG,
// else defaultFile, and returns its path and the settings it sets. A missing
// default file is no error and gives path "".
func readConfigFile(configFlag *flagValue, getenv func(string) string, defaultFile string, table []setting) (string, map[string]rawValue, error) {
	path, source, explicit := defaultFile, "", false
	switch {
	case configFlag.set:
		path, source, explicit = configFlag.text, "flag --config", true
	case getenv(envName("config")) != "":
		path, source, explicit = getenv(envName("config")), "env "+envName("config"), true
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
	case explicit || !errors.Is(err, os.ErrNotExist):
		return "", nil, &SettingError{Setting: "config", Value: path, Reason: fileReason(err), Source: source}
	default:
		return "", nil, nil
	}
	values, err := parseTOML(data, path, table)
	if err != nil {
		return "", nil, err
	}
	return path, values, nil
}

// parseTOML reads the settings a TOML file sets. Keys are setting names,
// spelled exactly; any other key is an error naming it. A setting's value
// must be a string or a whole number, and is checked later like a flag's.
func parseTOML(data []byte, path string, table []setting) (map[string]rawValue, error) {
	var doc map[string]any
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		return nil, &SettingError{Setting: "config", Value: path, Reason: "is not valid TOML: " + strings.TrimPrefix(err.Error(), "toml: ")}
	}
	values := make(map[string]rawValue)
	for _, s := range table {
		v, ok := doc[s.name]
		if !ok {
			continue
		}
		text, err := tomlText(v, s.field(&Config{}), strings.ToLower(md.Type(s.name)))
		if err != nil {
			return nil, &SettingError{Setting: s.name, Reason: err.Error(), Source: path}
		}
		values[s.name] = rawValue{text: text, source: path}
	}
	// Everything decodes into a map, so md.Undecoded is always empty: the
	// unknown keys are those, in file order, whose top level is no setting.
	for _, key := range md.Keys() {
		if !isSetting(table, key[0]) {
			return nil, &SettingError{Setting: key.String(), Reason: `is not a setting ("edgemc help" lists them)`, Source: path}
		}
	}
	return values, nil
}

// unknownEnv warns about EDGEMC_* variables that name no setting (a typo
// would otherwise be silently ignored). Values are never included.
func unknownEnv(environ []string, table []setting) []string {
	var warnings []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || name == envName("config") ||
			slices.ContainsFunc(table, func(s setting) bool { return envName(s.name) == name }) {
			continue
		}
		warnings = append(warnings, "unknown environment variable "+name+" is ignored")
	}
	return warnings
}

// tomlText is a TOML value as the text a setting with field parses (as
// if given as a flag): a string or a whole number for any setting, true or
// false for a switch, an array of strings for a list.
func tomlText(v any, field any, tomlType string) (string, error) {
	_, isBool := field.(*bool)
	_, isList := field.(*[]string)
	switch v := v.(type) {
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case bool:
		if isBool {
			return strconv.FormatBool(v), nil
		}
	case []any:
		if isList {
			return tomlList(v)
		}
	}
	want := "a string or a whole number"
	switch {
	case isBool:
		want = "true or false"
	case isList:
		want = "a list of strings"
	}
	return "", fmt.Errorf("must be %s, not a TOML %s", want, tomlType)
}

// tomlList turns a TOML array of strings into the comma-separated text a
// list setting parses.
func tomlList(items []any) (string, error) {
	texts := make([]string, len(items))
	for i, item := range items {
		text, ok := item.(string)
		switch {
		case !ok:
			return "", errors.New("must be a list of strings")
		case strings.Contains(text, ","):
			return "", fmt.Errorf("has an entry %q with a comma", text)
		}
		texts[i] = text
	}
	return strings.Join(texts, ","), nil
}
