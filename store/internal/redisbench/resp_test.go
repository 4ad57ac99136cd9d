package main

import (
	"bufio"
	"bytes"
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
