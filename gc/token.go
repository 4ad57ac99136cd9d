package gc

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
)

// maxTokenFileSize bounds the bearer token file.
const maxTokenFileSize = 16 << 10

// TokenSource supplies the MC's own service token, sent as
// "authorization: Bearer <token>" on every call to the GC and the media
// handlers. Token may wait (bounded by ctx) for a token that is on its way.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// FileToken is a TokenSource reading the token from a file on every call,
// so that a rotated token is used without a restart.
type FileToken string

// Token returns the file's contents without surrounding white space.
func (f FileToken) Token(context.Context) (string, error) {
	return readTokenFile(string(f))
}

func readTokenFile(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("gc: reading token file: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxTokenFileSize+1))
	if err != nil {
		return "", fmt.Errorf("gc: reading token file: %w", err)
	}
	if len(b) > maxTokenFileSize {
		return "", fmt.Errorf("gc: token file %s is larger than %d bytes", path, maxTokenFileSize)
	}
	return strings.TrimSpace(string(b)), nil
}

// BearerCredentials sends the source's current token with every call of a
// gRPC client. A token that cannot be had fails the call with that error
// (which never contains a token). Plaintext targets are allowed: the
// operator chose http://.
func BearerCredentials(ts TokenSource) credentials.PerRPCCredentials { return bearer{ts} }

type bearer struct{ ts TokenSource }

func (b bearer) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := b.ts.Token(ctx)
	if err != nil {
		return nil, err
	}
	if tok == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// WaitToken waits until ts has a token, when ts can tell (a source that
// fetches its token, such as the Auth Controller's, has a method
// Wait(ctx) error); other sources are taken to have one. It returns ctx's
// error if ctx ends first.
func WaitToken(ctx context.Context, ts TokenSource) error {
	if w, ok := ts.(interface{ Wait(context.Context) error }); ok {
		return w.Wait(ctx)
	}
	return nil
}
