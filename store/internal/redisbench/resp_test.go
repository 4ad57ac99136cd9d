package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"reflect"
	"testing"
)

func replyOf(data []byte) (any, error) {
	c := &respConn{r: bufio.NewReader(bytes.NewReader(data))}
	return c.reply()
}

func TestReply(t *testing.T) {
	for in, want := range map[string]any{
		"+OK\r\n":                 "OK",
		":42\r\n":                 int64(42),
		"$3\r\nabc\r\n":           "abc",
		"$-1\r\n":                 nil,
		"*2\r\n$1\r\na\r\n:1\r\n": []any{"a", int64(1)},
		"*1\r\n*1\r\n+nested\r\n": []any{[]any{"nested"}},
	} {
		got, err := replyOf([]byte(in))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("reply(%q) = %#v, %v; want %#v", in, got, err, want)
		}
	}
	for _, in := range []string{"-ERR boom\r\n", "$999999999\r\n", "?x\r\n", "+OK\n", "$5\r\nab"} {
		if _, err := replyOf([]byte(in)); err == nil {
			t.Errorf("reply(%q) accepted", in)
		}
	}
}

func FuzzReply(f *testing.F) {
	for _, s := range []string{"+OK\r\n", ":1\r\n", "$3\r\nabc\r\n", "*2\r\n$1\r\na\r\n:1\r\n", "-ERR x\r\n", "$-1\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = replyOf(data) // must not panic or allocate without bound
	})
}

// TestStopRedis: once stop returns, the redis-server is gone (a run must not
// leave one behind).
func TestStopRedis(t *testing.T) {
	const bin = "/usr/bin/redis-server"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("no redis-server:", err)
	}
	addr, stop, err := startRedis(context.Background(), bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if c, err := dialRESP(addr); err == nil {
		c.Close()
		t.Fatalf("redis-server still answers on %s after stop", addr)
	}
}
