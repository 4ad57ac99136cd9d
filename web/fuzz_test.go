package web

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"", "Bearer abc", "bearer  abc ", "Basic Zm9v", "Bearer", "Bearer ", "Bearer a b", "\x00Bearer x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, ok := bearerToken(header)
		if !ok {
			if tok != "" {
				t.Fatalf("token %q without ok", tok)
			}
			return
		}
		if tok == "" || tok != strings.TrimSpace(tok) || !strings.Contains(header, tok) {
			t.Fatalf("bearerToken(%q) = %q", header, tok)
		}
		if !strings.EqualFold(header[:len("Bearer")], "Bearer") {
			t.Fatalf("accepted scheme of %q", header)
		}
	})
}

func FuzzParseJoinQuery(f *testing.F) {
	f.Add("host", "Alice")
	f.Add("participant", "  Bob  ")
	f.Add("admin", "x")
	f.Add("host", "")
	f.Add("host", "\xff")
	f.Add("participant", strings.Repeat("é", 129))
	f.Fuzz(func(t *testing.T, role, name string) {
		r, n, err := parseJoinQuery(role, name)
		if err != nil {
			return
		}
		if r != RoleHost && r != RoleParticipant {
			t.Fatalf("role %q accepted", r)
		}
		if n == "" || len(n) > MaxNameBytes || !utf8.ValidString(n) || n != strings.TrimSpace(n) {
			t.Fatalf("name %q accepted", n)
		}
	})
}

func FuzzTokenAuth(f *testing.F) {
	f.Add("secret", "secret")
	f.Add("secret", "secreT")
	f.Add("secret", "")
	f.Add("a", "ab")
	f.Fuzz(func(t *testing.T, token, presented string) {
		if token == "" {
			return
		}
		a := newTokenAuth(token)
		if a.tokenOK(presented) != (token == presented) {
			t.Fatalf("tokenOK(%q) with token %q", presented, token)
		}
	})
}

func FuzzLoopback(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "[::1]:1", "localhost", "::1", "[::1", "127.0.0.1:", "10.0.0.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Accepting a host means it names the loopback interface.
		if hostIsLoopback(s) && !strings.Contains(strings.ToLower(s), "localhost") &&
			!strings.Contains(s, "127.") && !strings.Contains(s, "::") {
			t.Fatalf("hostIsLoopback(%q)", s)
		}
		_ = remoteIsLoopback(s)
	})
}
