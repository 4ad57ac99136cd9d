package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
	"google.golang.org/protobuf/proto"

	pb "github.com/edgemc/edgemc/webtransport/signalingpb"

	"github.com/edgemc/edgemc/web/webtest"
)

// miniMC is a tiny in-test meeting controller speaking just enough of the
// signaling protocol over real WebTransport to drive the lab page: join,
// self-mute, host-mute (FORBIDDEN for non-hosts), unmute requests (passed
// to the hosts) and leave. Its join tokens are "<role>:<anything>".
type miniMC struct {
	url  string
	hash [32]byte

	mu     sync.Mutex
	nextID int
	peers  map[string]*miniPeer
}

type miniPeer struct {
	id, name, role string
	str            *webtransport.Stream
	mute           *pb.ParticipantMuteUpdate
}

func startMiniMC(t *testing.T) *miniMC {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mc := &miniMC{
		url:   fmt.Sprintf("https://%s/signaling", conn.LocalAddr()),
		hash:  sha256.Sum256(der),
		peers: map[string]*miniPeer{},
	}
	mux := http.NewServeMux()
	h3 := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		}),
		Handler: mux,
	}
	webtransport.ConfigureHTTP3Server(h3)
	wts := &webtransport.Server{H3: h3, CheckOrigin: func(*http.Request) bool { return true }}
	mux.HandleFunc("/signaling", func(w http.ResponseWriter, r *http.Request) {
		sess, err := wts.Upgrade(w, r)
		if err != nil {
			t.Logf("upgrade: %v", err)
			return
		}
		str, err := sess.AcceptStream(r.Context())
		if err != nil {
			return
		}
		mc.serve(str)
		sess.CloseWithError(0, "")
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = wts.Serve(conn)
	}()
	t.Cleanup(func() {
		wts.Close()
		conn.Close()
		<-done
	})
	return mc
}

func (mc *miniMC) JoinInfo(_ context.Context, role, name string) (LabJoin, error) {
	return LabJoin{URL: mc.url, CertSHA256: mc.hash[:], MeetingID: "lab-meeting", Token: role + ":" + name}, nil
}

func sendServer(str io.Writer, m *pb.ServerMessage) {
	b, _ := proto.Marshal(m)
	_, _ = str.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
	_, _ = str.Write(b)
}

// broadcast sends m to every peer; the caller holds mc.mu.
func (mc *miniMC) broadcast(m *pb.ServerMessage, except string) {
	for id, p := range mc.peers {
		if id != except {
			sendServer(p.str, m)
		}
	}
}

func (mc *miniMC) serve(str *webtransport.Stream) {
	var self *miniPeer
	defer func() {
		if self == nil {
			return
		}
		mc.mu.Lock()
		defer mc.mu.Unlock()
		delete(mc.peers, self.id)
		mc.broadcast(&pb.ServerMessage{Message: &pb.ServerMessage_ParticipantLeft{
			ParticipantLeft: &pb.ParticipantLeft{ParticipantId: self.id}}}, "")
	}()
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(str, hdr[:]); err != nil {
			return
		}
		b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(str, b); err != nil {
			return
		}
		var msg pb.ClientMessage
		if err := proto.Unmarshal(b, &msg); err != nil {
			return
		}
		mc.mu.Lock()
		switch m := msg.Message.(type) {
		case *pb.ClientMessage_JoinRequest:
			role, _, _ := strings.Cut(m.JoinRequest.JoinToken, ":")
			mc.nextID++
			self = &miniPeer{id: fmt.Sprintf("p-%d", mc.nextID), name: m.JoinRequest.ParticipantName, role: role, str: str}
			self.mute = &pb.ParticipantMuteUpdate{ParticipantId: self.id}
			jr := &pb.JoinResponse{ParticipantId: self.id, CorrelationId: "corr", BindingToken: "binding"}
			for _, p := range mc.peers {
				jr.ExistingParticipants = append(jr.ExistingParticipants, &pb.Participant{ParticipantId: p.id, Name: p.name})
			}
			sendServer(str, &pb.ServerMessage{Message: &pb.ServerMessage_JoinResponse{JoinResponse: jr}})
			mc.broadcast(&pb.ServerMessage{Message: &pb.ServerMessage_ParticipantJoined{ParticipantJoined: &pb.ParticipantJoined{
				Participant: &pb.Participant{ParticipantId: self.id, Name: self.name}}}}, "")
			mc.peers[self.id] = self
		case *pb.ClientMessage_MuteRequest:
			self.mute.AudioSelfMuted, self.mute.VideoSelfMuted = m.MuteRequest.AudioMuted, m.MuteRequest.VideoMuted
			mc.broadcast(&pb.ServerMessage{Message: &pb.ServerMessage_ParticipantMuteUpdate{ParticipantMuteUpdate: self.mute}}, "")
		case *pb.ClientMessage_HostMuteRequest:
			target := mc.peers[m.HostMuteRequest.ParticipantId]
			switch {
			case self.role != RoleHost:
				sendServer(str, &pb.ServerMessage{Message: &pb.ServerMessage_Error{Error: &pb.ErrorMessage{
					Code: pb.ErrorCode_FORBIDDEN, Message: "host-mute needs the host role"}}})
			case target == nil:
				sendServer(str, &pb.ServerMessage{Message: &pb.ServerMessage_Error{Error: &pb.ErrorMessage{Code: pb.ErrorCode_NOT_FOUND}}})
			default:
				target.mute.AudioHostMuted, target.mute.VideoHostMuted = m.HostMuteRequest.AudioMuted, m.HostMuteRequest.VideoMuted
				target.mute.HostMutedBy = self.id
				mc.broadcast(&pb.ServerMessage{Message: &pb.ServerMessage_ParticipantMuteUpdate{ParticipantMuteUpdate: target.mute}}, "")
			}
		case *pb.ClientMessage_UnmuteRequest:
			for _, p := range mc.peers {
				if p.role == RoleHost && p != self {
					sendServer(p.str, &pb.ServerMessage{Message: &pb.ServerMessage_UnmuteRequest{UnmuteRequest: m.UnmuteRequest}})
				}
			}
		}
		mc.mu.Unlock()
	}
}

// TestBrowserLabDemo joins the demo page from two Chromium tabs over real
// WebTransport (pinned self-signed certificate) to an in-test controller,
// checking what each person sees: controls only while joined, host-mute
// buttons only for the host and not on their own row, "Ask to unmute"
// for a host-muted participant, no stale error after leaving.
func TestBrowserLabDemo(t *testing.T) {
	ctx := webtest.NewBrowser(t)
	mc := startMiniMC(t)
	srv := newServer(t, Options{Lab: mc}, &fakeSource{s: sampleStatus()})
	shown, notShown := webtest.Shown, webtest.NotShown
	hostMuteButtons := `tr[data-participant-id] .actions button`

	host, guest := ctx, webtest.NewTab(t, ctx)
	run(t, host, chromedp.Navigate(srv.URL+"/lab/join?role=host&name=Alice&autojoin=1"))
	waitFor(t, host, `document.getElementById('status').textContent === 'joined'`)
	// Before joining: the form, no controls.
	run(t, guest, chromedp.Navigate(srv.URL+"/lab/join?role=participant&name=Bob"))
	waitFor(t, guest, shown(`#join`)+` && `+notShown(`#controls`, `#mute-audio`, `#leave`, `#error`, `#notice`))
	run(t, guest, chromedp.Click(`#join`))
	waitFor(t, guest, `document.getElementById('status').textContent === 'joined' && `+shown(`#mute-audio`, `#mute-video`, `#leave`))

	rows := `document.querySelectorAll('#roster tr[data-participant-id]').length`
	waitFor(t, host, rows+` === 2`)
	waitFor(t, guest, rows+` === 2`)
	if !strings.Contains(eval[string](t, host, `document.getElementById('devnote').textContent`), "Development tool") {
		t.Error("the lab page does not say it is a development tool")
	}
	// Host-mute buttons: the host sees them on Bob's row only; Bob sees none.
	waitFor(t, host, shown(`tr[data-participant-id="p-2"] .host-mute-audio`, `tr[data-participant-id="p-2"] .host-mute-video`, `#roster th.host-only`)+
		` && `+notShown(`tr[data-participant-id="p-1"] .actions button`))
	waitFor(t, guest, notShown(hostMuteButtons, `#roster th.host-only`))

	// Bob mutes his audio; Alice sees it.
	run(t, guest, chromedp.Click(`#mute-audio`))
	waitFor(t, host, `document.querySelector('tr[data-participant-id="p-2"]').dataset.audio === 'muted'`)
	// Bob may not host-mute Alice, even without a button: the server says FORBIDDEN.
	eval[bool](t, guest, `window.edgemcDemo.hostMute('p-1', true, false).then(() => true)`)
	waitFor(t, guest, shown(`#error`)+` && document.getElementById('error').textContent.startsWith('FORBIDDEN')`)
	// Alice host-mutes Bob's video; Bob sees it, and can only ask to be unmuted.
	run(t, host, chromedp.Click(`tr[data-participant-id="p-2"] .host-mute-video`))
	waitFor(t, guest, `document.querySelector('tr[data-participant-id="p-2"]').dataset.video === 'host-muted' && `+
		shown(`#ask-video`, `#mute-audio`)+` && `+notShown(`#mute-video`, `#ask-audio`))
	if eval[string](t, host, `document.getElementById('error').textContent`) != "" {
		t.Error("host sees an error")
	}
	run(t, guest, chromedp.Click(`#ask-video`))
	waitFor(t, guest, `document.getElementById('ask-video').disabled`)
	waitFor(t, host, shown(`#notice`)+` && document.getElementById('notice').textContent.startsWith('Bob asks to be unmuted (video)')`)
	// Alice lifts the host-mute: Bob has his own video button back.
	run(t, host, chromedp.Click(`tr[data-participant-id="p-2"] .host-mute-video`))
	waitFor(t, guest, shown(`#mute-video`)+` && `+notShown(`#ask-video`))
	waitFor(t, host, notShown(`#notice`))
	screenshot(t, host, "lab-host.png")

	// Nothing secret on screen: the binding token stays in the protocol.
	for _, tab := range []context.Context{host, guest} {
		if txt := eval[string](t, tab, `document.body.innerText + JSON.stringify(window.edgemcDemo.state)`); strings.Contains(txt, "binding") {
			t.Error("binding token shown")
		}
	}

	// Bob leaves: Alice's roster shrinks; Bob sees the form again, without
	// controls and without the error of the session he left.
	run(t, guest, chromedp.Click(`#leave`))
	waitFor(t, host, rows+` === 1`)
	waitFor(t, guest, notShown(`#controls`, `#error`, `#mute-audio`, `#leave`)+` && `+shown(`#join`))
	if got := eval[string](t, guest, `document.getElementById('status').textContent`); got != "left" {
		t.Errorf("guest status %q", got)
	}
}

// gatedLab answers ErrLabNotReady, as the lab does before its demo meeting
// is assigned, until open is closed; then Lab answers.
type gatedLab struct {
	Lab
	open  chan struct{}
	calls atomic.Int32
}

func (g *gatedLab) JoinInfo(ctx context.Context, role, name string) (LabJoin, error) {
	g.calls.Add(1)
	select {
	case <-g.open:
		return g.Lab.JoinInfo(ctx, role, name)
	default:
		return LabJoin{}, fmt.Errorf("%w: demo meeting not assigned", ErrLabNotReady)
	}
}

// TestBrowserLabWaitsForTheMeeting: while the demo meeting is not held, the
// demo page says it is waiting, shows no error and asks again; it joins
// once the meeting is there.
func TestBrowserLabWaitsForTheMeeting(t *testing.T) {
	ctx := webtest.NewBrowser(t)
	lab := &gatedLab{Lab: startMiniMC(t), open: make(chan struct{})}
	srv := newServer(t, Options{Lab: lab}, &fakeSource{s: sampleStatus()})

	run(t, ctx, chromedp.Navigate(srv.URL+"/lab/join?role=host&name=Alice&autojoin=1"))
	waitFor(t, ctx, `document.getElementById('status').checkVisibility() &&
		document.getElementById('status').innerText === 'waiting for the demo meeting'`)
	if eval[bool](t, ctx, `document.getElementById('error').checkVisibility()`) {
		t.Errorf("an error is shown while waiting: %s", eval[string](t, ctx, `document.getElementById('error').innerText`))
	}
	close(lab.open)
	waitFor(t, ctx, `document.getElementById('status').innerText === 'joined'`)
	if n := lab.calls.Load(); n < 2 {
		t.Errorf("join-info asked %d times, want a retry", n)
	}
	if eval[bool](t, ctx, `document.getElementById('error').checkVisibility()`) {
		t.Errorf("error shown after joining: %s", eval[string](t, ctx, `document.getElementById('error').innerText`))
	}
}
