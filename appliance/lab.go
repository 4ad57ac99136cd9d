package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgemc/edgemc/gc/devgc"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/web"
)

// DemoMeetingID is the meeting the lab's development GC assigns.
const DemoMeetingID = "demo"

// lab is the development control plane of `edgemc lab`: a token issuer
// (devissuer) with a fresh Ed25519 key (JWKS on loopback) and a development
// GC (devgc) on loopback that accepts the registration and assigns the demo
// meeting. Neither runs outside lab mode.
type lab struct {
	log     *slog.Logger
	issuer  *devissuer.Issuer
	gc      *devgc.GC
	gcLis   net.Listener
	jwksLis net.Listener
	jwksURL string
	gcAddr  string

	// kick asks the assigner to try at once (buffered: one request waits).
	kick chan struct{}
	mu   sync.Mutex
	// tried is closed, and replaced, after every assignment attempt.
	tried chan struct{}
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
	l.jwksURL = "http://" + l.jwksLis.Addr().String() + "/.well-known/jwks.json"
	l.gcAddr = "http://" + l.gcLis.Addr().String()
	l.gc = devgc.New(devgc.Config{Logger: log})
	return l, nil
}

// run serves the issuer and the GC, and keeps the demo meeting assigned to
// the appliance at mcAddr (re-assigning it after it ends); held reports
// whether the appliance holds it.
func (l *lab) run(ctx context.Context, mcAddr, wtURL string, held func() bool) error {
	g, ctx := errgroup.WithContext(ctx)
	mux := http.NewServeMux()
	mux.Handle("/.well-known/jwks.json", l.issuer.JWKSHandler())
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
	l.log.Warn("LAB MODE: development GC and token issuer running on loopback; not for production",
		"gc", l.gcAddr, "jwks", l.jwksURL, "webtransport", wtURL)
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
	l.jwksLis.Close()
	l.gcLis.Close()
}

func (l *lab) info() *web.LabInfo {
	return &web.LabInfo{
		MeetingID: DemoMeetingID,
		JoinPath:  "/lab/join",
		Note:      "Lab mode: a development GC and token issuer run inside this process on loopback. Not for production.",
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

// JoinInfo hands out a token only once the demo meeting is held, so that the
// token is good for a meeting that exists.
func (j labJoin) JoinInfo(ctx context.Context, role, name string) (web.LabJoin, error) {
	if err := j.a.lab.awaitDemo(ctx, j.a.holdsDemo); err != nil {
		return web.LabJoin{}, err
	}
	cert := j.a.certs.Current()
	token := j.a.lab.issuer.MeetingToken("lab-user-"+newID(), DemoMeetingID, devissuer.WithRole(role))
	return web.LabJoin{URL: j.a.wtURL(), CertSHA256: cert.SHA256[:], MeetingID: DemoMeetingID, Token: token}, nil
}

// holdsDemo reports whether the controller holds the demo meeting.
func (a *appliance) holdsDemo() bool { return a.ctrl.lookup(DemoMeetingID) != nil }
