package appliance

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/edgemc/edgemc/gc/tlsfiles"
)

// Checks and rules of the control plane's transport security settings.

// certificateFile accepts a readable PEM file of certificates only.
func certificateFile(path string) error {
	data, err := readPEM(path)
	if err != nil {
		return err
	}
	_, err = tlsfiles.ParseCertificates(data)
	return err
}

// caBundleFile accepts a readable PEM bundle of CA certificates.
func caBundleFile(path string) error {
	data, err := readPEM(path)
	if err != nil {
		return err
	}
	_, err = tlsfiles.ParsePool(data)
	return err
}

// readPEM reads a PEM file; the reason never repeats the path.
func readPEM(path string) ([]byte, error) {
	data, err := tlsfiles.ReadFile(path)
	if fe := (*tlsfiles.FileError)(nil); errors.As(err, &fe) {
		return nil, fe.Err
	}
	return data, err
}

// parseList splits a comma-separated list, trimming spaces and dropping
// empty entries; every entry must pass check.
func parseList(v string, check func(string) error) ([]string, error) {
	var list []string
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if check != nil {
			if err := check(item); err != nil {
				return nil, fmt.Errorf("has an entry %q that %w", item, err)
			}
		}
		list = append(list, item)
	}
	return list, nil
}

// isLoopback reports whether host (a name or an address) is this machine:
// "localhost", 127.0.0.0/8 or ::1.
func isLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// plaintextRemote reports whether rawURL is http:// to a host other than
// loopback: a link whose tokens cross the network in the clear.
func plaintextRemote(rawURL string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && u.Scheme == "http" && !isLoopback(u.Hostname())
}

// checkControlPlane applies the rules of the control plane's transport
// security; sources says where each setting's value came from. A
// grpc-advertise left at its default follows the server: https:// when it
// serves TLS.
func (c *Config) checkControlPlane(sources map[string]string) error {
	refuse := func(name, value, reason string) error {
		return &SettingError{Setting: name, Value: value, Reason: reason, Source: sources[name]}
	}
	for _, p := range []struct{ certName, keyName, cert, key string }{
		{"grpc-tls-cert", "grpc-tls-key", c.GRPCTLSCert, c.GRPCTLSKey},
		{"control-plane-client-cert", "control-plane-client-key", c.ControlPlaneClientCert, c.ControlPlaneClientKey},
	} {
		switch {
		case p.cert == "" && p.key == "":
			continue
		case p.cert == "":
			return &SettingError{Setting: p.certName, Reason: "must be set when " + p.keyName + " is", Source: sources[p.keyName]}
		case p.key == "":
			return &SettingError{Setting: p.keyName, Reason: "must be set when " + p.certName + " is", Source: sources[p.certName]}
		}
		if _, err := tlsfiles.LoadKeyPair(p.cert, p.key, nil); err != nil {
			name, value := p.keyName, p.key
			if fe := (*tlsfiles.FileError)(nil); errors.As(err, &fe) && fe.File == p.cert {
				name, value = p.certName, p.cert
			}
			return refuse(name, value, strings.TrimPrefix(err.Error(), value+": "))
		}
	}
	serverTLS := c.GRPCTLSCert != ""
	if c.GRPCClientCA != "" && !serverTLS {
		return refuse("grpc-client-ca", c.GRPCClientCA, "needs grpc-tls-cert and grpc-tls-key: client certificates are part of TLS")
	}

	if serverTLS && sources["grpc-advertise"] == "default" {
		c.GRPCAdvertise = "https" + strings.TrimPrefix(c.GRPCAdvertise, "http")
	}
	switch scheme, _, _ := strings.Cut(c.GRPCAdvertise, "://"); {
	case scheme == "https" && !serverTLS:
		return refuse("grpc-advertise", c.GRPCAdvertise, "is https:// but the gRPC server has no TLS: set grpc-tls-cert and grpc-tls-key, or advertise http://")
	case scheme == "http" && serverTLS:
		return refuse("grpc-advertise", c.GRPCAdvertise, "is http:// but the gRPC server serves TLS (grpc-tls-cert): advertise https://")
	}

	if !c.AllowPlaintextControlPlane {
		for _, link := range [][2]string{{"gc-url", c.GCURL}, {"jwks-url", c.JWKSURL}, {"ac-url", c.ACURL}} {
			if plaintextRemote(link[1]) {
				return refuse(link[0], link[1], "is plaintext (http://) to a host that is not loopback: use https:// (trusting control-plane-ca), or set allow-plaintext-control-plane = true to send tokens in the clear")
			}
		}
	}
	return nil
}
