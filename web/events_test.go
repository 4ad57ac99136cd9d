package web

import (
	"bufio"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// openEvents opens a live stream.
func openEvents(t *testing.T, url string) (*http.Response, sseReader) {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, sseReader{bufio.NewReader(resp.Body)}
}

// nextEvent skips keep-alive comments.
func nextEvent(t *testing.T, r sseReader) (string, map[string]any) {
	t.Helper()
	for {
		ev, data, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if ev != "comment" {
			return ev, decodeJSON(t, data)
		}
	}
}

func TestEventsStream(t *testing.T) {
	src := &fakeSource{s: sampleStatus()}
	srv := newServer(t, Options{EventInterval: 5 * time.Millisecond, KeepAliveInterval: 20 * time.Millisecond}, src)
	resp, events := openEvents(t, srv.URL)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	ev, data, err := events.next()
	if err != nil || ev != "status" || path(t, decodeJSON(t, data), "health") != "HEALTHY" {
		t.Fatalf("first event %q %s %v", ev, data, err)
	}
	// Unchanged status: only keep-alive comments.
	if ev, _, err := events.next(); err != nil || ev != "comment" {
		t.Fatalf("want keep-alive comment, got %q %v", ev, err)
	}
	// A change sends what changed, nothing else.
	src.update(func(s *Status) { s.Health = HealthDegraded })
	if ev, p := nextEvent(t, events); ev != "patch" || !reflect.DeepEqual(p, map[string]any{"health": "DEGRADED"}) {
		t.Fatalf("after a health change: %s %v, want a patch of the health alone", ev, p)
	}
	// A change in one participant of one meeting sends that meeting's change.
	src.update(func(s *Status) { s.Meetings[0].Participants[0].AudioSelfMuted = true })
	ev, p := nextEvent(t, events)
	want := map[string]any{"meetings": map[string]any{"meeting-1": map[string]any{"participants": path(t, p, "meetings", "meeting-1", "participants")}}}
	if ev != "patch" || !reflect.DeepEqual(p, want) {
		t.Fatalf("after a mute: %s %v", ev, p)
	}
	// A meeting that ends is removed by id.
	src.update(func(s *Status) { s.Meetings = nil })
	if ev, p := nextEvent(t, events); ev != "patch" || !reflect.DeepEqual(p, map[string]any{"meetings": map[string]any{"meeting-1": nil}}) {
		t.Fatalf("after the meeting ended: %s %v", ev, p)
	}
}

// Applying the patches to the first document gives the status, whatever
// changed.
func TestMergePatchRebuildsTheStatus(t *testing.T) {
	a := sampleStatus()
	b := sampleStatus()
	b.Health, b.Lab = HealthDraining, &LabInfo{MeetingID: "lab", JoinPath: "/lab/join", Note: "n"}
	b.System.RSSBytes = 1 << 62 // beyond float64's exact integers
	b.Meetings = append(b.Meetings, Meeting{ID: "0-first", MediaHandlers: []string{}, Participants: []Participant{}})
	b.Meetings[0].Participants = b.Meetings[0].Participants[:1]
	c := sampleStatus()
	c.Meetings = nil
	for _, pair := range [][2]Status{{a, b}, {b, a}, {b, c}, {c, b}, {a, a}} {
		_, from, err := liveDocument(pair[0])
		if err != nil {
			t.Fatal(err)
		}
		_, to, err := liveDocument(pair[1])
		if err != nil {
			t.Fatal(err)
		}
		p := mergePatch(from, to)
		if reflect.DeepEqual(from, to) != (p == nil) {
			t.Fatalf("patch %v between documents equal: %v", p, reflect.DeepEqual(from, to))
		}
		if p == nil {
			continue
		}
		// Through JSON, as a client gets it.
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var patch any
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		if err := dec.Decode(&patch); err != nil {
			t.Fatal(err)
		}
		if got := applyMergePatch(from, patch); !reflect.DeepEqual(got, to) {
			t.Fatalf("patched document\n%v\nwant\n%v", got, to)
		}
	}
}

// applyMergePatch is RFC 7396's MergePatch, as the status page runs it.
func applyMergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	out := map[string]any{}
	for k, v := range t {
		out[k] = v
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = applyMergePatch(out[k], v)
		}
	}
	return out
}

// Past MaxEventStreams a new stream gets 503; a closed one frees its place.
func TestEventStreamsBounded(t *testing.T) {
	src := &fakeSource{s: sampleStatus()}
	srv := newServer(t, Options{EventInterval: 5 * time.Millisecond, MaxEventStreams: 2}, src)
	first, r1 := openEvents(t, srv.URL)
	_, r2 := openEvents(t, srv.URL)
	for _, r := range []sseReader{r1, r2} {
		if ev, _ := nextEvent(t, r); ev != "status" {
			t.Fatalf("first event %s", ev)
		}
	}
	resp, err := http.Get(srv.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a third stream: %d, want 503 with Retry-After", resp.StatusCode)
	}
	first.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(srv.URL + "/api/v1/events")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed stream never freed its place")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A stream that does not read its events is ended; the others go on.
func TestLaggingEventStreamEnded(t *testing.T) {
	hub := &liveHub{max: 2, running: true} // published to by hand below
	lagging, reading := hub.subscribe(), hub.subscribe()
	st := sampleStatus()
	for i := range liveQueue + 1 {
		st.System.Goroutines = i
		full, doc, err := liveDocument(st)
		if err != nil {
			t.Fatal(err)
		}
		if !hub.publish(full, doc, nil) {
			t.Fatal("the hub stopped with streams open")
		}
		select {
		case ev := <-reading.events:
			if want := "event: status"; i == 0 && !strings.HasPrefix(string(ev), want) {
				t.Fatalf("first event %q, want %s", ev, want)
			}
		default:
			t.Fatalf("the reading stream got no event %d", i)
		}
	}
	select {
	case <-lagging.gone:
	default:
		t.Fatalf("a stream with %d events waiting was not ended", liveQueue)
	}
	select {
	case <-reading.gone:
		t.Fatal("the reading stream was ended")
	default:
	}
	hub.unsubscribe(reading)
	if hub.publish(nil, nil, nil) || hub.running {
		t.Fatal("the hub goes on with no stream open")
	}
}
