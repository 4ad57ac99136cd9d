package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
)

// ServerFiles names the PEM files of a TLS server.
type ServerFiles struct {
	// CertFile and KeyFile are the server's certificate chain and key.
	CertFile, KeyFile string
	// ClientCAFile, when set, is a CA bundle: every client must present a
	// certificate it signed (mutual TLS).
	ClientCAFile string
}

// Server is the TLS side of a listener. Every handshake uses the current
// files, so a renewed certificate is served from the next handshake on while
// open connections keep theirs.
type Server struct {
	cert     *KeyPair
	clientCA *Pool // nil: no client certificate is asked for
}

// NewServer reads the files; any that cannot be used is a *FileError. log
// receives reload errors (nil discards).
func NewServer(files ServerFiles, log *slog.Logger) (*Server, error) {
	cert, err := LoadKeyPair(files.CertFile, files.KeyFile, log)
	if err != nil {
		return nil, err
	}
	s := &Server{cert: cert}
	if files.ClientCAFile != "" {
		if s.clientCA, err = LoadPool(files.ClientCAFile, log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Config is the configuration to serve with (TLS 1.2 at least). It hands
// each handshake the current certificate and client CAs; callers may set
// NextProtos on it, which every handshake then offers.
func (s *Server) Config() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*s.cert.Certificate()},
			NextProtos:   base.NextProtos,
		}
		if s.clientCA != nil {
			c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, s.clientCA.CertPool()
		}
		return c, nil
	}
	return base
}

// Leaf is the certificate currently served.
func (s *Server) Leaf() *x509.Certificate { return s.cert.Leaf() }

// MutualTLS reports whether clients must present a certificate.
func (s *Server) MutualTLS() bool { return s.clientCA != nil }
