package appliance

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/tlsfiles"
	"github.com/edgemc/edgemc/web"
)

// controlPlane is the transport security of the control plane: the gRPC
// server's TLS, the trust of every outbound call, and what each link's
// handshakes showed.
type controlPlane struct {
	server *tlsfiles.Server      // nil: the gRPC server is plaintext
	trust  *tlsfiles.ClientTrust // for every outbound control-plane call
	gc     *tlsfiles.Peer
	jwks   *tlsfiles.Peer
}

// newControlPlane reads the certificate files of cfg; the configuration
// was checked, so an error here means a file changed since.
func newControlPlane(cfg Config, log *slog.Logger) (*controlPlane, error) {
	log = log.With("component", "tls")
	cp := &controlPlane{gc: tlsfiles.NewPeer(log.With("link", "gc")), jwks: tlsfiles.NewPeer(log.With("link", "jwks"))}
	var err error
	if cfg.GRPCTLSCert != "" {
		cp.server, err = tlsfiles.NewServer(tlsfiles.ServerFiles{
			CertFile: cfg.GRPCTLSCert, KeyFile: cfg.GRPCTLSKey, ClientCAFile: cfg.GRPCClientCA,
		}, log.With("link", "grpc-server"))
		if err != nil {
			return nil, fmt.Errorf("gRPC server TLS: %w", err)
		}
	}
	cp.trust, err = tlsfiles.NewClientTrust(tlsfiles.ClientFiles{
		CAFile: cfg.ControlPlaneCA, CertFile: cfg.ControlPlaneClientCert, KeyFile: cfg.ControlPlaneClientKey,
	}, log)
	if err != nil {
		return nil, fmt.Errorf("control-plane trust: %w", err)
	}
	return cp, nil
}

// serverTLS is the gRPC server's TLS configuration, nil for plaintext.
func (cp *controlPlane) serverTLS() *tls.Config {
	if cp.server == nil {
		return nil
	}
	return cp.server.Config()
}

// servicePins are the pins on callers' service tokens, counted in m.
func servicePins(cfg Config, m *web.ControlPlaneMetrics) auth.ServicePins {
	return auth.ServicePins{
		Issuer: cfg.ServiceTokenIssuer, Audience: cfg.ServiceTokenAudience, Subjects: cfg.ServiceTokenSubjects,
		Refused: m.PinRefused,
	}
}

// links describes every control-plane link; grpcURL is the advertised gRPC
// endpoint.
func (cp *controlPlane) links(cfg Config, grpcURL string) []web.TLSLink {
	now := time.Now()
	srv := web.TLSLink{Name: "grpc-server", Label: "gRPC server", URL: grpcURL, TLS: cp.server != nil}
	if cp.server != nil {
		leaf := cp.server.Leaf()
		srv.MutualTLS = cp.server.MutualTLS()
		srv.SetCert(leaf.Subject.String(), leaf.NotAfter, now)
	} else if plaintextRemote(grpcURL) {
		srv.Warning = "plaintext: the tokens of the GC and media handlers cross the network in the clear (set grpc-tls-cert and grpc-tls-key)"
	}
	links := []web.TLSLink{srv}
	if cfg.GCURL != "" {
		links = append(links, cp.outbound("gc", "Global Controller", cfg.GCURL, cp.gc, now))
	}
	if cfg.JWKSURL != "" {
		links = append(links, cp.outbound("jwks", "Auth Controller (JWKS)", cfg.JWKSURL, cp.jwks, now))
	}
	return links
}

// outbound describes an outbound link to rawURL whose handshakes p saw.
func (cp *controlPlane) outbound(name, label, rawURL string, p *tlsfiles.Peer, now time.Time) web.TLSLink {
	l := web.TLSLink{Name: name, Label: label, URL: rawURL}
	if u, err := url.Parse(rawURL); err == nil && u.Scheme == "https" {
		st := p.State()
		l.TLS, l.MutualTLS, l.Problem = true, cp.trust.MutualTLS(), st.Problem
		l.SetCert(st.Subject, st.NotAfter, now)
	} else if plaintextRemote(rawURL) {
		l.Warning = "plaintext: allowed by allow-plaintext-control-plane, so tokens cross the network in the clear"
	}
	return l
}

// warnPlaintext logs a WARN for every link that crosses the network in
// the clear; it runs at every start.
func (cp *controlPlane) warnPlaintext(cfg Config, grpcURL string, log *slog.Logger) {
	for _, l := range cp.links(cfg, grpcURL) {
		if l.Warning != "" {
			log.Warn("control-plane link without TLS", "link", l.Name, "url", l.URL, "warning", l.Warning)
		}
	}
}

// controlPlaneLinks describes every control-plane link, for the status page
// and the metrics.
func (a *appliance) controlPlaneLinks() []web.TLSLink {
	if a.cp == nil {
		return nil
	}
	return a.cp.links(a.cfg, a.grpcAdvertise())
}
