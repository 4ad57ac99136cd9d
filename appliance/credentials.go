package appliance

import (
	"fmt"

	"github.com/edgemc/edgemc/gc"
	"github.com/edgemc/edgemc/gc/actoken"
	"github.com/edgemc/edgemc/gc/mh"
	"github.com/edgemc/edgemc/web"
)

// initCredentials builds edgemc's own credentials for the calls it makes to
// the GC and the media handlers: the Auth Controller's client-credentials
// token source (ac-url, client-id, client-secret-file; lab mode's
// development AC), or the fixed token of gc-token-file. Without either,
// edgemc calls neither the GC nor the media handlers.
func (a *appliance) initCredentials() error {
	cfg := a.cfg
	switch {
	case cfg.ACURL != "":
		secret := func() (string, error) { return readSecretFile(cfg.ClientSecretFile, "client-secret-file") }
		if a.lab != nil {
			secret = a.lab.acSecret
		}
		src, err := actoken.New(actoken.Config{
			URL:         cfg.ACURL,
			ClientID:    cfg.ClientID,
			Secret:      secret,
			BackoffBase: cfg.GCBackoffBase,
			BackoffMax:  cfg.GCBackoffMax,
			Transport:   a.cp.trust.HTTPTransport(nil),
			Logger:      a.log.With("component", "ac"),
			Observer:    a.metrics,
		})
		if err != nil {
			return fmt.Errorf("auth controller: %w", err)
		}
		a.ac, a.tokens = src, src
	case cfg.GCTokenFile != "":
		a.tokens = gc.FileToken(cfg.GCTokenFile)
	default:
		return nil
	}
	mc := mh.Config{
		MCID:           cfg.ID,
		MCGRPCEndpoint: a.grpcAdvertise(),
		Tokens:         a.tokens,
		Credentials:    a.cp.trust.Credentials(nil),
		Logger:         a.log.With("component", "mh"),
		Observer:       a.metrics,
	}
	if a.opts.mhTune != nil {
		a.opts.mhTune(&mc)
	}
	c, err := mh.New(mc)
	if err != nil {
		return fmt.Errorf("media handler client: %w", err)
	}
	a.mh = &mhClient{c: c}
	return nil
}

// acStatus is the Auth Controller token source as the status page shows it;
// nil when edgemc does not use one.
func (a *appliance) acStatus() *web.ACStatus {
	if a.ac == nil {
		return nil
	}
	s := a.ac.Status()
	return &web.ACStatus{
		URL: s.URL, ClientID: s.ClientID, HasToken: s.HasToken, ExpiresAt: s.ExpiresAt, Scope: s.Scope,
		LastSuccess: s.LastSuccess, NextAttempt: s.NextAttempt, ConsecutiveFailures: s.Failures,
		LastError: s.LastError, LastErrorKind: s.LastErrorKind,
	}
}
