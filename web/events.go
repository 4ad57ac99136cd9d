package web

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"time"
)

// The live stream (GET /api/v1/events) sends the status as server-sent
// events: first the whole document as a "status" event, then, whenever it
// changes, only what changed as a "patch" event, and a comment line when
// nothing was sent for KeepAliveInterval.
//
// A patch is a JSON merge patch (RFC 7396) of the document in which
// "meetings" is an object keyed by meeting id instead of an array (the
// array is in id order), so that a change to one meeting sends that meeting
// only. The status document holds no JSON null, so merging a patch into the
// previous document gives the new one exactly.
//
// One goroutine reads the status for every stream, once per EventInterval,
// and only while a stream is open; a stream that cannot take its events is
// ended (the client reconnects and gets the whole document again).

// eventWriteTimeout bounds the write of one event to a live stream: the
// server's WriteTimeout, meant for whole answers, does not apply to it.
const eventWriteTimeout = 10 * time.Second

// liveQueue is how many events a stream may have waiting to be written.
const liveQueue = 8

// liveHub reads the status for the live streams and hands each its events.
type liveHub struct {
	snapshot func(context.Context) Status
	interval time.Duration
	max      int
	log      *slog.Logger

	mu      sync.Mutex
	subs    map[*liveSub]struct{}
	running bool
	last    map[string]any // the document last sent, keyed as patches are
	full    []byte         // its "status" event
}

// liveSub is one open stream.
type liveSub struct {
	events   chan []byte   // SSE messages to write
	gone     chan struct{} // closed when the hub ended the stream
	needFull bool          // gets the whole document next
}

// subscribe opens a stream, or returns nil when MaxEventStreams are open.
// The first event is the whole document: the last one read, or the next.
func (h *liveHub) subscribe() *liveSub {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= h.max {
		return nil
	}
	s := &liveSub{events: make(chan []byte, liveQueue), gone: make(chan struct{})}
	if h.full != nil {
		s.events <- h.full
	} else {
		s.needFull = true
	}
	if h.subs == nil {
		h.subs = map[*liveSub]struct{}{}
	}
	h.subs[s] = struct{}{}
	if !h.running {
		h.running = true
		go h.run()
	}
	return s
}

func (h *liveHub) unsubscribe(s *liveSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}

// run reads the status every interval while a stream is open.
func (h *liveHub) run() {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		full, doc, err := liveDocument(h.snapshot(ctx))
		cancel()
		if !h.publish(full, doc, err) {
			return
		}
		<-t.C
	}
}

// publish hands every stream its event for the document just read; it
// reports false, and stops the hub, once no stream is open.
func (h *liveHub) publish(full []byte, doc map[string]any, err error) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		h.running, h.last, h.full = false, nil, nil
		return false
	}
	if err != nil {
		h.log.Error("encode status", "err", err)
		return true
	}
	fullEvent := sseEvent("status", full)
	var patchEvent []byte
	if h.last != nil {
		if p := mergePatch(h.last, doc); p != nil {
			b, err := json.Marshal(p)
			if err != nil {
				h.log.Error("encode status patch", "err", err)
				return true
			}
			patchEvent = sseEvent("patch", b)
		}
	}
	for s := range h.subs {
		ev := patchEvent
		if s.needFull {
			ev, s.needFull = fullEvent, false
		}
		if ev == nil {
			continue
		}
		select {
		case s.events <- ev:
		default: // it cannot keep up: end it
			delete(h.subs, s)
			close(s.gone)
		}
	}
	h.last, h.full = doc, fullEvent
	return true
}

// liveDocument is s as JSON, and as the document patches are computed on:
// decoded, with meetings keyed by id, numbers kept as written.
func liveDocument(s Status) ([]byte, map[string]any, error) {
	full, err := json.Marshal(s)
	if err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(full))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, err
	}
	list, _ := doc["meetings"].([]any)
	keyed := make(map[string]any, len(list))
	for _, m := range list {
		if mm, ok := m.(map[string]any); ok {
			id, _ := mm["id"].(string)
			keyed[id] = mm
		}
	}
	doc["meetings"] = keyed
	return full, doc, nil
}

// mergePatch returns the JSON merge patch (RFC 7396) that turns from into
// to, or nil when they are equal. Neither may hold a JSON null.
func mergePatch(from, to map[string]any) map[string]any {
	p := map[string]any{}
	for k, tv := range to {
		fv, ok := from[k]
		if !ok {
			p[k] = tv
			continue
		}
		fo, fObj := fv.(map[string]any)
		to, tObj := tv.(map[string]any)
		switch {
		case fObj && tObj:
			if sub := mergePatch(fo, to); sub != nil {
				p[k] = sub
			}
		case !reflect.DeepEqual(fv, tv):
			p[k] = tv
		}
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			p[k] = nil
		}
	}
	if len(p) == 0 {
		return nil
	}
	return p
}

// events serves one live stream; see the top of this file. Past
// MaxEventStreams it answers 503, and the status page polls instead.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	sub := h.live.subscribe()
	if sub == nil {
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "too many live-update streams; poll /api/v1/status")
		return
	}
	defer h.live.unsubscribe(sub)
	rc := http.NewResponseController(w)
	// The stream outlives the server's read timeout (which would otherwise
	// end it) and its write timeout: each event has its own deadline.
	_ = rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	keepAlive := time.NewTimer(h.keepAlive)
	defer keepAlive.Stop()
	for {
		var msg []byte
		select {
		case <-r.Context().Done():
			return
		case <-sub.gone:
			return
		case msg = <-sub.events:
		case <-keepAlive.C:
			msg = []byte(": keep-alive\n\n")
		}
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		if _, err := w.Write(msg); err != nil {
			return // client gone
		}
		if err := rc.Flush(); err != nil {
			return
		}
		keepAlive.Reset(h.keepAlive)
	}
}

func sseEvent(name string, data []byte) []byte {
	// json.Marshal output holds no newline, so one data line suffices.
	b := make([]byte, 0, len(data)+len(name)+16)
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}
