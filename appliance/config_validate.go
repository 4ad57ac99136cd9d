package appliance

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/edgemc/edgemc/gc/auth"
)

// set parses v into the setting's field of c. The error is the reason only,
// phrased to follow the value.
func (s setting) set(c *Config, v string) error {
	switch p := s.field(c).(type) {
	case *string:
		if s.check != nil {
			if err := s.check(v); err != nil {
				return err
			}
		}
		*p = v
	case *uint32:
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		_, errSigned := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch {
		case errors.Is(err, strconv.ErrRange) || err == nil && n > math.MaxUint32:
			return fmt.Errorf("is larger than %d", uint32(math.MaxUint32))
		case err != nil && (errSigned == nil || errors.Is(errSigned, strconv.ErrRange)):
			// A negative whole number.
			return errors.New("must be greater than zero")
		case err != nil:
			return errors.New("is not a whole number")
		case n == 0:
			return errors.New("must be greater than zero")
		}
		*p = uint32(n)
	case *time.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		switch {
		case err != nil:
			return errors.New(`is not a duration (such as "30s" or "1m30s")`)
		case d <= 0:
			return errors.New("must be greater than zero")
		}
		*p = d
	case *bool:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return errors.New("is not true or false")
		}
		*p = b
	case *[]string:
		list, err := parseList(v, s.check)
		if err != nil {
			return err
		}
		*p = list
	default:
		panic(fmt.Sprintf("setting %s: unsupported field type %T", s.name, p))
	}
	return nil
}

// crossCheck applies the rules that involve more than one setting.
func (c *Config) crossCheck() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		missing, other := "tls-key", "tls-cert"
		if c.TLSCert == "" {
			missing, other = other, missing
		}
		return &SettingError{Setting: missing, Reason: "must be set when " + other + " is"}
	}
	if err := c.credentialsCheck(); err != nil {
		return err
	}
	if c.GCBackoffBase > c.GCBackoffMax {
		return &SettingError{Setting: "gc-backoff-base", Value: c.GCBackoffBase.String(),
			Reason: "must not be longer than gc-backoff-max (" + c.GCBackoffMax.String() + ")"}
	}
	return nil
}

// credentialsCheck: the MC's own credentials are either a fixed token
// (gc-token-file) or the Auth Controller's client credentials (ac-url,
// client-id and client-secret-file together), never both, and a GC link
// needs one of them.
func (c *Config) credentialsCheck() error {
	ac := map[string]string{"ac-url": c.ACURL, "client-id": c.ClientID, "client-secret-file": c.ClientSecretFile}
	var set, unset []string
	for _, name := range []string{"ac-url", "client-id", "client-secret-file"} {
		if ac[name] != "" {
			set = append(set, name)
		} else {
			unset = append(unset, name)
		}
	}
	switch {
	case len(set) > 0 && len(unset) > 0:
		verb := " is"
		if len(set) > 1 {
			verb = " are"
		}
		return &SettingError{Setting: unset[0], Reason: "must be set when " + strings.Join(set, " and ") + verb + " (ac-url, client-id and client-secret-file go together)"}
	case len(set) > 0 && c.GCTokenFile != "":
		return &SettingError{Setting: "gc-token-file", Reason: "must not be set with ac-url: edgemc's credentials are either a fixed token or the Auth Controller's client credentials"}
	case c.GCURL != "" && len(set) == 0 && c.GCTokenFile == "":
		return &SettingError{Setting: "gc-url", Reason: "needs edgemc's credentials: ac-url, client-id and client-secret-file (or gc-token-file)"}
	}
	return nil
}

// Checks for string settings. Each returns the reason, phrased to follow the value.

// nonEmpty rejects a value that is empty or only white space.
func nonEmpty(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("must not be empty")
	}
	return nil
}

// identifier is a non-empty printable name without spaces, at most 255 bytes.
func identifier(v string) error {
	switch {
	case v == "":
		return errors.New("must not be empty")
	case len(v) > 255:
		return errors.New("is longer than 255 bytes")
	case strings.ContainsFunc(v, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }):
		return errors.New("must not contain spaces or control characters")
	}
	return nil
}

// optional accepts the empty value and otherwise applies check.
func optional(check func(string) error) func(string) error {
	return func(v string) error {
		if v == "" {
			return nil
		}
		return check(v)
	}
}

// oneOf accepts exactly one of the allowed values.
func oneOf(allowed ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
		}
		return nil
	}
}

// listenAddr accepts host:port with a decimal port from 0 to 65535; the host
// may be empty.
func listenAddr(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return errors.New(`is not host:port (such as ":4433" or "127.0.0.1:8081")`)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return errors.New("does not end in a port number from 0 to 65535")
	}
	return nil
}

// advertiseURL accepts an absolute URL with one of the schemes and a host.
func advertiseURL(schemes ...string) func(string) error {
	want := strings.Join(schemes, ":// or ") + "://"
	return func(v string) error {
		u, err := url.Parse(v)
		if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" || u.Hostname() == "" {
			return fmt.Errorf("is not an %s URL with a host", want)
		}
		if p := u.Port(); p != "" {
			if _, err := strconv.ParseUint(p, 10, 16); err != nil {
				return errors.New("has a port out of range")
			}
		}
		return nil
	}
}

// readableFile opens the file to prove it can be read. The reason never
// contains the path or the contents.
func readableFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return errors.New(fileReason(err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return errors.New("is a directory, not a file")
	}
	if _, err := f.Read(make([]byte, 1)); err != nil && !errors.Is(err, io.EOF) {
		return errors.New(fileReason(err))
	}
	return nil
}

// fileReason describes a file error without repeating the path.
func fileReason(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return "cannot be read: " + err.Error()
}

// ed25519PEMFile accepts a readable PEM file holding an Ed25519 public key
// (PKIX "PUBLIC KEY").
func ed25519PEMFile(path string) error {
	if err := readableFile(path); err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return errors.New(fileReason(err))
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return errors.New("is not a PEM file")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if _, ok := key.(ed25519.PublicKey); err != nil || !ok {
		return errors.New("does not hold an Ed25519 public key (PEM \"PUBLIC KEY\")")
	}
	return nil
}

// Validate checks what the settings cannot show one at a time: that join
// tokens can be verified (jwks-url or jwt-public-key, unless opts.Lab, whose
// token issuer supplies the keys) and that the files they name hold what
// edgemc will read from them (the token key, the certificate pair, the
// session-binding secret, the status token). It reads those files and
// changes nothing: call it before logging, opening the store or creating
// data-dir, so that a configuration error leaves nothing behind. The error
// is a *SettingError naming the setting.
func (c Config) Validate(opts RunOptions) error {
	if !opts.Lab && c.JWKSURL == "" && c.JWTPublicKey == "" {
		return &SettingError{Setting: "jwks-url", Missing: true,
			Reason: "set jwks-url (or jwt-public-key) so that join tokens can be verified"}
	}
	if c.JWTPublicKey != "" && !opts.Lab {
		raw, err := os.ReadFile(c.JWTPublicKey)
		if err == nil {
			_, err = auth.ParsePublicKeyPEM(raw)
		}
		if err != nil {
			return &SettingError{Setting: "jwt-public-key", Value: c.JWTPublicKey, Reason: "is not usable: " + err.Error()}
		}
	}
	if c.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			return &SettingError{Setting: "tls-cert", Value: c.TLSCert, Reason: "and tls-key are not a usable certificate pair: " + err.Error()}
		}
	}
	if c.BindingSecretFile != "" {
		raw, err := os.ReadFile(c.BindingSecretFile)
		if err != nil {
			return &SettingError{Setting: "binding-secret-file", Reason: fileReason(err)}
		}
		if _, err := parseBindingSecret(raw); err != nil {
			return &SettingError{Setting: "binding-secret-file", Reason: err.Error()}
		}
	}
	if c.StatusTokenFile != "" {
		tok, err := readSecretFile(c.StatusTokenFile, "status-token-file")
		if err != nil {
			return &SettingError{Setting: "status-token-file", Reason: fileReason(err)}
		}
		if tok == "" {
			return &SettingError{Setting: "status-token-file", Reason: "names an empty file, which would leave the status page open"}
		}
	}
	return nil
}
