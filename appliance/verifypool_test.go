package appliance

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/edgemc/edgemc/gc/auth"
)

// gateVerifier verifies "good" and refuses anything else; while its gate is
// held, every check waits.
type gateVerifier struct {
	gate    sync.RWMutex
	started chan struct{}
}

func (v *gateVerifier) VerifyJoin(_ context.Context, token string) (*auth.JoinClaims, error) {
	v.started <- struct{}{}
	v.gate.RLock()
	defer v.gate.RUnlock()
	if token != "good" {
		return nil, &auth.TokenError{Reason: auth.ReasonSignature}
	}
	return &auth.JoinClaims{Subject: "u", MeetingID: "m"}, nil
}

func TestVerifyPool(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	v := &gateVerifier{started: make(chan struct{}, 256)}
	p := newVerifyPool(ctx, v, 2)

	if c, err := p.VerifyJoin(context.Background(), "good"); err != nil || c.Subject != "u" {
		t.Fatalf("good token: %+v, %v", c, err)
	}
	if _, err := p.VerifyJoin(context.Background(), "bad"); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("bad token: %v, want the verifier's refusal", err)
	}
	<-v.started
	<-v.started

	// A caller whose context ends stops waiting; the worker finishes the
	// check and drops the answer.
	v.gate.Lock()
	cctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { _, err := p.VerifyJoin(cctx, "good"); errc <- err }()
	<-v.started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled check: %v", err)
	}
	v.gate.Unlock()

	// Once stopped, the pool refuses at once.
	stop()
	for range 100 {
		if _, err := p.VerifyJoin(context.Background(), "good"); errors.Is(err, errPoolStopped) {
			return
		}
	}
	t.Fatal("a stopped pool still verifies")
}
