package appliance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgemc/edgemc/gc"
	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/devac"
	"github.com/edgemc/edgemc/gc/devgc"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/devmh"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/web"
)

// DemoMeetingID is the meeting the lab's development GC assigns.
const DemoMeetingID = "demo"

// Lab mode's media handler and edgemc's client id at the lab's AC.
const (
	labMHID     = "lab-mh-1"
	labClientID = "lab-mc"
)

// lab is the development control plane of `edgemc lab`, all on loopback: a
// token issuer (devissuer) with a fresh Ed25519 key whose JWKS and
// client-credentials token endpoint (devac) are served over HTTP; a
// development GC (devgc) that accepts the registration and assigns the demo
// meeting with one development media handler (devmh), which answers
// RegisterMeeting and takes the lab page's media connections. None of them
// runs outside lab mode.
type lab struct {
	log     *slog.Logger
	issuer  *devissuer.Issuer
	gc      *devgc.GC
	gcLis   net.Listener
	jwksLis net.Listener // JWKS and the AC's token endpoint
	jwksURL string
	gcAddr  string

	// kick asks the assigner to try at once (buffered: one request waits).
	kick chan struct{}
	mu   sync.Mutex
	// tried is closed, and replaced, after every assignment attempt.
	tried chan struct{}

	acURL  string
	secret string // edgemc's client secret at the lab's AC

	mh           *devmh.MH
	mhAssignment *internalpb.MhAssignment // as the development GC assigns it
	mhLis        net.Listener             // its gRPC server
	mhWT         net.PacketConn           // its WebTransport endpoint
	tlsConfig    *tls.Config              // the appliance's certificate, which the MH serves too
}

func startLab(log *slog.Logger) (*lab, error) {
	l := &lab{log: log, issuer: devissuer.NewIssuer(), kick: make(chan struct{}, 1), tried: make(chan struct{})}
	var err error
	if l.jwksLis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("lab issuer: %w", err)
	}
	if l.gcLis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		l.jwksLis.Close()
		return nil, fmt.Errorf("lab GC: %w", err)
	}
	if l.mhLis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		l.close()
		return nil, fmt.Errorf("lab MH: %w", err)
	}
	if l.mhWT, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
		l.close()
		return nil, fmt.Errorf("lab MH: %w", err)
	}
	l.jwksURL = "http://" + l.jwksLis.Addr().String() + "/.well-known/jwks.json"
	l.acURL = "http://" + l.jwksLis.Addr().String()
	l.gcAddr = "http://" + l.gcLis.Addr().String()
	l.secret = newID()
	keys := auth.NewStaticKeys(l.issuer.PublicKey())
	l.mh = devmh.New(devmh.Config{
		ID:           labMHID,
		Verifier:     auth.NewVerifier(keys, auth.VerifierOptions{}),
		ServiceToken: func() string { return l.issuer.ServiceToken(labMHID, "media-handler") },
		Logger:       log,
	})
	l.mhAssignment = &internalpb.MhAssignment{
		MhId:                 labMHID,
		WebtransportEndpoint: fmt.Sprintf("https://127.0.0.1:%d/", l.mhWT.LocalAddr().(*net.UDPAddr).Port),
		GrpcEndpoint:         "http://" + l.mhLis.Addr().String(),
	}
	l.gc = devgc.New(devgc.Config{Logger: log, MediaHandlers: []*internalpb.MhAssignment{l.mhAssignment}})
	return l, nil
}

// mediaHandlers is the demo meeting's media handler in this run.
func (l *lab) mediaHandlers() []gc.MHAssignment {
	return []gc.MHAssignment{{MHID: l.mhAssignment.GetMhId(),
		WebTransportEndpoint: l.mhAssignment.GetWebtransportEndpoint(), GRPCEndpoint: l.mhAssignment.GetGrpcEndpoint()}}
}

// adoptDemo gives a demo meeting recovered from an earlier run this run's
// media handler (whose ports are new), before any client can rejoin it, as
// the development GC is about to do: a client reconnecting first would be
// given the old handler's URL.
func (l *lab) adoptDemo(c *Controller) {
	if c.lookup(DemoMeetingID) == nil {
		return
	}
	if _, err := c.AssignMeeting(context.Background(), DemoMeetingID, l.mediaHandlers(), "lab"); err != nil {
		l.log.Warn("the recovered demo meeting keeps its old media handler", "err", err)
	}
}

// acSecret is edgemc's client secret at the lab's AC.
func (l *lab) acSecret() (string, error) { return l.secret, nil }

// run serves the issuer and the GC, and keeps the demo meeting assigned to
// the appliance at mcAddr (re-assigning it after it ends); held reports
// whether the appliance holds it.
func (l *lab) run(ctx context.Context, mcAddr, wtURL string, held func() bool) error {
	g, ctx := errgroup.WithContext(ctx)
	mux := http.NewServeMux()
	mux.Handle("/.well-known/jwks.json", l.issuer.JWKSHandler())
	mux.Handle(devac.TokenPath, devac.Handler(devac.Config{Issuer: l.issuer, ClientID: labClientID, Secret: l.secret}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error {
		if err := srv.Serve(l.jwksLis); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("lab issuer: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		return srv.Close()
	})
	g.Go(func() error { return l.gc.Serve(ctx, l.gcLis) })
	g.Go(func() error { return l.mh.ServeGRPC(ctx, l.mhLis) })
	g.Go(func() error { return l.mh.ServeWebTransport(ctx, l.mhWT, l.tlsConfig) })
	g.Go(func() error {
		// Keep the demo meeting assigned: at start, again after it ends, and
		// at once when a join is waiting for it.
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if !held() {
				token := l.issuer.ServiceToken("lab-gc", "global-controller")
				if err := l.gc.AssignDemo(ctx, mcAddr, DemoMeetingID, token); err != nil && ctx.Err() == nil {
					l.log.Debug("demo meeting not assigned yet", "err", err)
				}
			}
			l.mu.Lock()
			close(l.tried)
			l.tried = make(chan struct{})
			l.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			case <-l.kick:
			}
		}
	})
	l.log.Warn("LAB MODE: development GC, auth controller, media handler and token issuer running on loopback; not for production",
		"gc", l.gcAddr, "jwks", l.jwksURL, "ac", l.acURL, "mh", l.mhLis.Addr().String(), "webtransport", wtURL)
	return g.Wait()
}

// awaitDemo returns once held reports the demo meeting held, asking the
// assigner to try at once, or an error wrapping web.ErrLabNotReady when ctx
// ends first.
func (l *lab) awaitDemo(ctx context.Context, held func() bool) error {
	for kicked := false; ; kicked = true {
		l.mu.Lock()
		tried := l.tried // taken before looking, so no attempt goes unseen
		l.mu.Unlock()
		if held() {
			return nil
		}
		if !kicked {
			select {
			case l.kick <- struct{}{}:
			default: // a request is already waiting
			}
		}
		select {
		case <-tried:
		case <-ctx.Done():
			return fmt.Errorf("lab: %w", web.ErrLabNotReady)
		}
	}
}

func (l *lab) close() {
	for _, lis := range []net.Listener{l.jwksLis, l.gcLis, l.mhLis} {
		if lis != nil {
			lis.Close()
		}
	}
	if l.mhWT != nil {
		l.mhWT.Close()
	}
}

func (l *lab) info() *web.LabInfo {
	return &web.LabInfo{
		MeetingID: DemoMeetingID,
		JoinPath:  "/lab/join",
		Note:      "Lab mode: a development GC, auth controller, media handler and token issuer run inside this process on loopback. Not for production.",
	}
}

// labJoin satisfies web.Lab for the demo page.
type labJoin struct{ a *appliance }

func (a *appliance) labHandle() web.Lab {
	if a.lab == nil {
		return nil
	}
	return labJoin{a}
}

// labSubjectPrefix starts the sub of every lab join token.
const labSubjectPrefix = "lab-user-"

func (j labJoin) JoinInfo(ctx context.Context, role, name string) (web.LabJoin, error) {
	return j.RejoinInfo(ctx, role, name, labSubjectPrefix+newID())
}

// RejoinInfo mints a join token for a lab subject again, so that the demo
// page can reconnect as the same participant after a restart (its binding
// needs a token of the same sub).
func (j labJoin) RejoinInfo(ctx context.Context, role, name, sub string) (web.LabJoin, error) {
	if !strings.HasPrefix(sub, labSubjectPrefix) {
		return web.LabJoin{}, web.ErrLabSubject
	}
	// The token is handed out only once the demo meeting is held, so that
	// it is good for a meeting that exists.
	if err := j.a.lab.awaitDemo(ctx, j.a.holdsDemo); err != nil {
		return web.LabJoin{}, err
	}
	cert := j.a.certs.Current()
	token := j.a.lab.issuer.MeetingToken(sub, DemoMeetingID, devissuer.WithRole(role))
	return web.LabJoin{
		URL: j.a.wtURL(), CertSHA256: cert.SHA256[:], MeetingID: DemoMeetingID, Token: token, Subject: sub,
		ReconnectWindow: j.a.cfg.DrainTimeout + j.a.cfg.DisconnectGrace,
	}, nil
}

// holdsDemo reports whether the controller holds the demo meeting.
func (a *appliance) holdsDemo() bool { return a.ctrl.lookup(DemoMeetingID) != nil }
