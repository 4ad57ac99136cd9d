package appliance

import (
	"context"
	"errors"
	"runtime"

	"github.com/edgemc/edgemc/gc/auth"
)

// verifyPool checks join tokens on a few long-lived goroutines instead of
// each session's own. Verifying a token (an Ed25519 signature, JSON claims)
// needs a deep stack: on a session's goroutine it cost a stack copy per join
// and a bigger stack held for as long as the session lives. The pool also
// bounds how much CPU token checks take at once (a flood of joins with bad
// tokens included).
type verifyPool struct {
	v    joinVerifier
	reqs chan verifyReq
	done <-chan struct{}
}

type verifyReq struct {
	ctx    context.Context
	token  string
	answer chan verifyAnswer // buffered: a worker never waits for its caller
}

type verifyAnswer struct {
	claims *auth.JoinClaims
	err    error
}

// errPoolStopped is returned for a check asked of a stopped pool.
var errPoolStopped = errors.New("appliance: token checks stopped")

// verifyWorkers is the pool's size: twice the usable CPUs, so that a
// worker waiting for the key source (a JWKS fetch) does not idle a CPU.
func verifyWorkers() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// newVerifyPool starts n workers that verify with v until ctx ends.
func newVerifyPool(ctx context.Context, v joinVerifier, n int) *verifyPool {
	p := &verifyPool{v: v, reqs: make(chan verifyReq), done: ctx.Done()}
	for range n {
		go p.work()
	}
	return p
}

func (p *verifyPool) work() {
	for {
		select {
		case r := <-p.reqs:
			claims, err := p.v.VerifyJoin(r.ctx, r.token)
			r.answer <- verifyAnswer{claims, err}
		case <-p.done:
			return
		}
	}
}

// VerifyJoin verifies token on a worker. It returns ctx's error if ctx
// ends first, and errPoolStopped once the pool has stopped.
func (p *verifyPool) VerifyJoin(ctx context.Context, token string) (*auth.JoinClaims, error) {
	r := verifyReq{ctx: ctx, token: token, answer: make(chan verifyAnswer, 1)}
	select {
	case p.reqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.done:
		return nil, errPoolStopped
	}
	select {
	case a := <-r.answer:
		return a.claims, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
