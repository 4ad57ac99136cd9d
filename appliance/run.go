package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/edgemc/edgemc/gc"
	"github.com/edgemc/edgemc/gc/actoken"
	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/mh"
	"github.com/edgemc/edgemc/gc/tracectx"
	"github.com/edgemc/edgemc/store"
	"github.com/edgemc/edgemc/web"
	"github.com/edgemc/edgemc/webtransport"
)

// RunOptions are the parts of a run that do not come from the configuration.
type RunOptions struct {
	Version string
	Logger  *slog.Logger
	// Lab runs a development GC, AC, media handler and token issuer in the
	// same process.
	Lab bool

	// mhTune adjusts the media-handler client (tests shorten its timings).
	mhTune func(*mh.Config)
}

// Run starts the appliance and serves until ctx is cancelled (SIGTERM or
// SIGINT), then drains and stops everything in reverse order. It returns nil
// after a clean drain.
func Run(ctx context.Context, cfg Config, opts RunOptions) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(opts); err != nil {
		return err
	}
	if opts.Lab {
		cfg = labListeners(cfg)
	}
	a, err := newAppliance(cfg, opts)
	if err != nil {
		return err
	}
	defer a.close()
	return a.run(ctx)
}

// appliance holds the parts of one running edgemc.
type appliance struct {
	cfg       Config
	opts      RunOptions
	log       *slog.Logger
	started   time.Time
	db        *store.DB
	metrics   *web.Metrics
	registry  *prometheus.Registry
	ctrl      *Controller
	certs     *webtransport.CertManager
	verifier  *auth.Verifier
	link      *gc.Link
	tokens    gc.TokenSource  // edgemc's own credentials; nil without any
	ac        *actoken.Source // when they come from the Auth Controller
	mh        *mhClient       // registers meetings with media handlers; nil without credentials
	lab       *lab
	grpcLis   net.Listener
	httpLis   net.Listener
	wt        *webtransport.Server
	statusTok string
	sys       gc.SystemSampler
	cp        *controlPlane
	cpMetrics *web.ControlPlaneMetrics
	procCPU   processCPU
}

func newAppliance(cfg Config, opts RunOptions) (*appliance, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// Records logged with a context that carries a trace get its trace_id.
	log := slog.New(tracectx.NewLogHandler(opts.Logger.Handler()))
	a := &appliance{cfg: cfg, opts: opts, log: log, started: time.Now(), sys: gc.NewGopsutilSampler()}
	a.procCPU.sample(a.started) // the first figure covers the time since start
	if err := a.init(); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// init opens and builds every part; close undoes what was done.
func (a *appliance) init() (err error) {
	cfg, opts := a.cfg, a.opts
	a.registry = prometheus.NewRegistry()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = web.NewMetrics(a.registry)
	a.cpMetrics = web.NewControlPlaneMetrics(a.registry)

	if a.statusTok, err = readSecretFile(cfg.StatusTokenFile, "status-token-file"); err != nil {
		return err
	}
	a.db, err = store.Open(cfg.DataDir, store.Options{
		SweepInterval: cfg.SweepInterval,
		Logger:        a.log,
		Observe:       a.metrics.StoreOp,

		ObserveCheckpoint: a.metrics.StoreCheckpoint,
	})
	if err != nil {
		return fmt.Errorf("open state in %s: %w", cfg.DataDir, err)
	}
	secret, err := loadBindingSecret(cfg.BindingSecretFile, cfg.DataDir)
	if err != nil {
		return err
	}
	b, err := newBinder(secret)
	if err != nil {
		return err
	}
	if opts.Lab {
		if a.lab, err = startLab(a.log.With("component", "lab")); err != nil {
			return err
		}
		cfg.JWKSURL, cfg.JWTPublicKey = a.lab.jwksURL, ""
		cfg.GCURL, cfg.GCTokenFile = a.lab.gcAddr, ""
		// The development GC calls the gRPC server in plaintext on loopback.
		cfg.GRPCTLSCert, cfg.GRPCTLSKey, cfg.GRPCClientCA = "", "", ""
		cfg.ACURL, cfg.ClientID, cfg.ClientSecretFile = a.lab.acURL, labClientID, ""
		if _, port, err := net.SplitHostPort(cfg.WebTransportListen); err == nil && port != "0" {
			// What browsers on this machine dial (wtURL once the port is bound).
			cfg.WebTransportAdvertise = "https://" + dialable(cfg.WebTransportListen) + "/"
		}
		a.cfg = cfg
	}
	if a.cp, err = newControlPlane(cfg, a.log); err != nil {
		return err
	}
	jwksClient := &http.Client{Timeout: 10 * time.Second, Transport: a.cp.trust.HTTPTransport(a.cp.jwks)}
	if a.verifier, err = newVerifier(cfg, a.log, jwksClient, servicePins(cfg, a.cpMetrics), a.metrics); err != nil {
		return err
	}
	if cfg.TLSCert != "" {
		a.certs, err = webtransport.NewFileCertManager(cfg.TLSCert, cfg.TLSKey)
	} else {
		a.certs, err = webtransport.NewSelfSignedManager(cfg.DataDir, a.log.With("component", "cert"))
	}
	if err != nil {
		return fmt.Errorf("webtransport certificate: %w", err)
	}
	if a.lab != nil {
		a.lab.tlsConfig = a.certs.TLSConfig()
	}
	if a.grpcLis, err = net.Listen("tcp", cfg.GRPCListen); err != nil {
		return fmt.Errorf("grpc-listen %s: %w", cfg.GRPCListen, err)
	}
	if a.httpLis, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
		return fmt.Errorf("http-listen %s: %w", cfg.HTTPListen, err)
	}
	if err := a.initCredentials(); err != nil {
		return err
	}
	a.ctrl = newController(controllerConfig{
		MaxMeetings:     cfg.MaxMeetings,
		MaxParticipants: cfg.MaxParticipants,
		Grace:           cfg.DisconnectGrace,
		EmptyTimeout:    cfg.EmptyMeetingTimeout,
		PerIdentity:     cfg.MaxSessionsPerIdentity,
		MessageRate:     cfg.SessionMessageRate,
		MessageBurst:    cfg.SessionMessageBurst,
	}, a.log.With("component", "controller"), a.db, a.verifier, b, a.metrics)
	if a.mh != nil {
		a.ctrl.SetRegistrar(a.mh)
	}
	n, err := a.ctrl.recover()
	if err != nil {
		return err
	}
	if n > 0 {
		a.log.Info("recovered meetings from the store", "meetings", n)
	}
	if a.lab != nil {
		a.lab.adoptDemo(a.ctrl)
	}
	a.limitListeners()
	a.wt, err = webtransport.NewServer(webtransport.ServerConfig{
		Addr:              cfg.WebTransportListen,
		TLSConfig:         a.certs.TLSConfig(),
		FirstFrameTimeout: cfg.FirstFrameTimeout,
		IdleTimeout:       cfg.SessionIdleTimeout,
		// Joined sessions: participants, with room for reconnections that
		// overlap the sessions they replace.
		MaxSessions:          int(cfg.MaxParticipants) + int(cfg.MaxParticipants)/10 + 64,
		MaxPending:           int(cfg.MaxPendingSessions),
		MaxPendingPerAddress: int(cfg.MaxPendingSessionsPerAddress),
		SlowClientTimeout:    cfg.SlowClientTimeout,
		StatelessResetKey:    b.statelessResetKey(),
		Logger:               a.log.With("component", "webtransport"),
		Observer:             a.metrics,
	}, a.ctrl)
	if err != nil {
		return err
	}
	if cfg.GCURL != "" {
		a.link, err = gc.NewLink(gc.LinkConfig{
			Target:                cfg.GCURL,
			Credentials:           a.cp.trust.Credentials(a.cp.gc),
			Tokens:                a.tokens,
			ID:                    cfg.ID,
			Region:                cfg.Region,
			GRPCEndpoint:          a.grpcAdvertise(),
			WebTransportEndpoint:  cfg.WebTransportAdvertise,
			MaxMeetings:           cfg.MaxMeetings,
			MaxParticipants:       cfg.MaxParticipants,
			BackoffBase:           cfg.GCBackoffBase,
			BackoffMax:            cfg.GCBackoffMax,
			FastInterval:          cfg.FastHeartbeat,
			ComprehensiveInterval: cfg.ComprehensiveHeartbeat,
			Logger:                a.log.With("component", "gc"),
			Observer:              a.metrics,
		}, a.ctrl, a.sys)
		if err != nil {
			return fmt.Errorf("gc link: %w", err)
		}
		a.ctrl.SetNotifier(a.link)
	}
	// States are read from the snapshot the status page shows.
	a.registry.MustRegister(web.NewStateCollector(a, a))
	a.cp.warnPlaintext(a.cfg, a.grpcAdvertise(), a.log)
	return nil
}

// grpcAdvertise is the endpoint the GC is told to call; in lab mode the
// development GC calls the address actually bound.
func (a *appliance) grpcAdvertise() string {
	if a.lab != nil {
		return "http://" + dialable(a.grpcLis.Addr().String())
	}
	return a.cfg.GRPCAdvertise
}

// labListeners binds every listener that the user did not set to loopback:
// lab mode is for trying edgemc on this machine, not for serving others.
func labListeners(cfg Config) Config {
	for _, l := range []struct {
		name string
		addr *string
	}{
		{"webtransport-listen", &cfg.WebTransportListen},
		{"grpc-listen", &cfg.GRPCListen},
		{"http-listen", &cfg.HTTPListen},
	} {
		if slices.Contains(cfg.Given, l.name) {
			continue
		}
		if _, port, err := net.SplitHostPort(*l.addr); err == nil {
			*l.addr = net.JoinHostPort("127.0.0.1", port)
		}
	}
	return cfg
}

// dialable is the host:port a client on this machine dials to reach a
// listener bound to addr: a wildcard host (empty, 0.0.0.0, ::) becomes
// 127.0.0.1.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func (a *appliance) run(ctx context.Context) error {
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	g, gctx := errgroup.WithContext(runCtx)

	grpcSrv := a.grpcServer()
	g.Go(func() error {
		if err := grpcSrv.Serve(a.grpcLis); err != nil {
			return fmt.Errorf("grpc server: %w", err)
		}
		return nil
	})
	g.Go(func() error { return a.wt.ListenAndServe(gctx) })
	g.Go(func() error { return a.certs.Run(gctx) })
	// Requests (the status page's event streams among them) end with the run.
	httpCtx, cancelHTTP := context.WithCancel(runCtx)
	defer cancelHTTP()
	httpSrv := a.httpServer(httpCtx)
	g.Go(func() error {
		if err := httpSrv.Serve(a.httpLis); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	if a.ac != nil {
		g.Go(func() error { return a.ac.Run(gctx) })
	}
	if a.link != nil {
		g.Go(func() error { return a.link.Run(gctx) })
	}
	if a.lab != nil {
		g.Go(func() error { return a.lab.run(gctx, dialable(a.grpcLis.Addr().String()), a.wtURL(), a.holdsDemo) })
	}
	select {
	case <-a.wt.Ready():
		cert := a.certs.Current()
		a.log.Info("edgemc ready",
			"id", a.cfg.ID, "version", a.opts.Version,
			"grpc", a.grpcLis.Addr().String(), "webtransport", a.wt.Addr().String(), "http", a.httpLis.Addr().String(),
			"cert_sha256", cert.HashHex(), "gc", a.cfg.GCURL != "")
		daemon.SdNotify(false, daemon.SdNotifyReady)
		if w := a.watchdog(); w != nil {
			g.Go(func() error { w.run(gctx); return nil })
		}
	case <-gctx.Done(): // a component failed before the appliance was ready
	}

	select {
	case <-ctx.Done():
		a.log.Info("shutting down: draining")
	case <-gctx.Done():
		a.log.Error("a component failed; shutting down")
	}
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	drainErr := a.drain(grpcSrv)
	cancelHTTP()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	httpSrv.Shutdown(shutdownCtx)
	cancelRun()
	err := g.Wait()
	if err == nil {
		err = drainErr
	}
	a.log.Info("edgemc stopped")
	return err
}

// drain stops taking new work, tells the GC, closes client sessions with a
// going-away reason (their bindings stay stored for the restart), and waits
// for in-flight work, all within drain-timeout.
func (a *appliance) drain(grpcSrv *grpc.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.DrainTimeout)
	defer cancel()
	a.ctrl.BeginDrain()
	if a.link != nil {
		hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
		if err := a.link.SendFinalHeartbeat(hctx); err != nil {
			a.log.Warn("final DRAINING heartbeat not delivered", "err", err)
		}
		hcancel()
	}
	// Browsers do not see close codes: a RedirectToMc before the close is
	// what tells a client to reconnect.
	if err := a.ctrl.Redirect(ctx, a.wtURL()); err != nil {
		a.log.Warn("not every participant was redirected before the drain", "err", err)
	}
	a.wt.Drain(closeGoingAway, "server going away")
	if err := a.ctrl.WaitSessions(ctx); err != nil {
		a.log.Warn("drain timed out with sessions still open")
	}
	stopped := make(chan struct{})
	go func() { grpcSrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		grpcSrv.Stop()
	}
	if err := a.ctrl.Stop(ctx); err != nil {
		return fmt.Errorf("drain: meetings did not stop within %s", a.cfg.DrainTimeout)
	}
	if a.mh != nil {
		if err := a.mh.wait(ctx); err != nil {
			return fmt.Errorf("drain: media handler registrations did not stop within %s", a.cfg.DrainTimeout)
		}
	}
	return nil
}

func (a *appliance) close() {
	if a.ctrl != nil {
		a.ctrl.cancel()
	}
	if a.link != nil {
		a.link.Close()
	}
	if a.mh != nil {
		a.mh.c.Close()
	}
	if a.lab != nil {
		a.lab.close()
	}
	for _, l := range []net.Listener{a.grpcLis, a.httpLis} {
		if l != nil {
			l.Close()
		}
	}
	if a.db != nil {
		if err := a.db.Close(); err != nil {
			a.log.Error("close store", "err", err)
		}
	}
}

// watchdog returns the systemd watchdog, or nil when systemd asks for none.
// It pings at half the interval systemd allows, after a round trip through
// the store's committer and every meeting actor: a hung fsync, a store whose
// sync failed (it refuses everything until a restart replays its log) or a
// stuck actor stops the pings, and systemd restarts the process.
func (a *appliance) watchdog() *watchdog {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil || every == 0 {
		return nil
	}
	return &watchdog{
		every:  every / 2,
		probes: []probe{{"store", a.db.Ping}, {"meetings", a.ctrl.Ping}},
		notify: func() error { _, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog); return err },
		log:    a.log.With("component", "watchdog"),
	}
}

// newVerifier verifies tokens with the keys of jwks-url, fetched with
// jwksClient, or of jwt-public-key; service tokens must meet pins.
func newVerifier(cfg Config, log *slog.Logger, jwksClient *http.Client, pins auth.ServicePins, obs auth.Observer) (*auth.Verifier, error) {
	var keys auth.KeySource
	switch {
	case cfg.JWKSURL != "":
		keys = auth.NewJWKS(cfg.JWKSURL, jwksClient, auth.JWKSOptions{Logger: log.With("component", "jwks")})
	case cfg.JWTPublicKey != "":
		raw, err := os.ReadFile(cfg.JWTPublicKey)
		if err != nil {
			return nil, fmt.Errorf("jwt-public-key: %w", err)
		}
		pub, err := auth.ParsePublicKeyPEM(raw)
		if err != nil {
			return nil, fmt.Errorf("jwt-public-key %s: %w", cfg.JWTPublicKey, err)
		}
		keys = auth.NewStaticKeys(pub)
	default:
		return nil, fmt.Errorf("%w: set jwks-url or jwt-public-key so that tokens can be verified", ErrInvalidSetting)
	}
	return auth.NewVerifier(keys, auth.VerifierOptions{Pins: pins, Observer: obs}), nil
}

func readSecretFile(path, setting string) (string, error) {
	if path == "" {
		return "", nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", setting, err)
	}
	return strings.TrimSpace(string(raw)), nil
}
