package main

// TestPrometheus runs a real Prometheus server (Debian's prometheus package)
// scraping the real edgemc on loopback, with edgemc's shipped alert rules
// loaded, and checks through Prometheus's HTTP API what an operator's
// Prometheus and Grafana would see.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/actest"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/gctest"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/gc/mhtest"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// Where the shipped dashboard and rules are, from this package's directory.
const (
	shippedRules     = "../../packaging/prometheus/edgemc-rules.yml"
	shippedDashboard = "../../packaging/grafana/edgemc.json"
)

// dtMetric is one of the meeting-controller metrics that Dark Tower's
// dashboards and alerts query: its label keys, the values of those whose
// set is closed, its buckets for a histogram, and series the test run must
// have produced (PromQL that must return something).
type dtMetric struct {
	name    string
	labels  []string
	values  map[string][]string
	buckets []string
	want    []string
}

var (
	actorTypes     = map[string][]string{"actor_type": {"controller", "meeting", "connection"}}
	successFailure = map[string][]string{"status": {"success", "failure"}}
)

// dtMetrics are the metrics of Dark Tower's list that edgemc has today,
// with the series the test's joins, mute, leave, refused token, wrong
// caller and GC outage produce.
var dtMetrics = []dtMetric{
	{
		name: "mc_connections_active",
		want: []string{"mc_connections_active == 2"},
	},
	{
		name: "mc_meetings_active",
		want: []string{"mc_meetings_active == 1"},
	},
	{
		name: "mc_actor_mailbox_depth", labels: []string{"actor_type"}, values: actorTypes,
		want: []string{`mc_actor_mailbox_depth{actor_type="meeting"}`, `mc_actor_mailbox_depth{actor_type="connection"}`},
	},
	{
		name: "mc_actor_panics_total", labels: []string{"actor_type"}, values: actorTypes,
		want: []string{`mc_actor_panics_total{actor_type="meeting"} == 0`},
	},
	{
		name: "mc_messages_dropped_total", labels: []string{"actor_type"}, values: actorTypes,
		want: []string{`mc_messages_dropped_total{actor_type="connection"} == 0`},
	},
	{
		name: "mc_gc_heartbeats_total", labels: []string{"heartbeat_type", "status"},
		values: map[string][]string{"status": {"success", "error"}, "heartbeat_type": {"fast", "comprehensive"}},
		want: []string{
			`mc_gc_heartbeats_total{status="success",heartbeat_type="fast"} > 0`,
			`mc_gc_heartbeats_total{status="success",heartbeat_type="comprehensive"} > 0`,
			`mc_gc_heartbeats_total{status="error",heartbeat_type="fast"} > 0`,
		},
	},
	{
		name: "mc_gc_heartbeat_latency_seconds", labels: []string{"heartbeat_type"},
		values:  map[string][]string{"heartbeat_type": {"fast", "comprehensive"}},
		buckets: []string{"0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf"},
		want:    []string{`mc_gc_heartbeat_latency_seconds_count{heartbeat_type="comprehensive"} > 0`},
	},
	{
		name: "mc_fenced_out_total", labels: []string{"reason"},
		values: map[string][]string{"reason": {"stale_generation", "concurrent_write"}},
		want:   []string{`mc_fenced_out_total{reason="stale_generation"} == 0`},
	},
	{
		name: "mc_webtransport_connections_total", labels: []string{"status"},
		values: map[string][]string{"status": {"accepted", "rejected", "error"}},
		want: []string{
			`mc_webtransport_connections_total{status="accepted"} == 4`,
			`mc_webtransport_connections_total{status="rejected"} == 0`,
			`mc_webtransport_connections_total{status="error"} == 0`,
		},
	},
	{
		name: "mc_jwt_validations_total", labels: []string{"failure_reason", "result", "token_type"},
		values: map[string][]string{"result": {"success", "failure"}, "token_type": {"meeting", "guest", "service"}},
		want: []string{
			`mc_jwt_validations_total{result="success",token_type="meeting",failure_reason="none"} == 3`,
			`mc_jwt_validations_total{result="failure",token_type="meeting",failure_reason="signature_invalid"} == 1`,
			`mc_jwt_validations_total{result="success",token_type="service",failure_reason="none"} == 4`,
		},
	},
	{
		name: "mc_session_joins_total", labels: []string{"status"}, values: successFailure,
		want: []string{`mc_session_joins_total{status="success"} == 3`, `mc_session_joins_total{status="failure"} == 1`},
	},
	{
		name: "mc_session_join_duration_seconds", labels: []string{"status"}, values: successFailure,
		buckets: []string{"0.01", "0.025", "0.05", "0.1", "0.2", "0.5", "1", "2", "5", "+Inf"},
		want:    []string{`mc_session_join_duration_seconds_count{status="success"} == 3`},
	},
	{
		name: "mc_session_join_failures_total", labels: []string{"error_type"},
		want: []string{`mc_session_join_failures_total{error_type="jwt_validation"} == 1`},
	},
	{
		name: "mc_token_refresh_total", labels: []string{"status"}, values: map[string][]string{"status": {"success", "error"}},
		want: []string{`mc_token_refresh_total{status="success"} >= 1`, `mc_token_refresh_total{status="error"} >= 1`},
	},
	{
		name:    "mc_token_refresh_duration_seconds",
		buckets: []string{"0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"},
		want:    []string{`mc_token_refresh_duration_seconds_count >= 2`},
	},
	{
		name: "mc_token_refresh_failures_total", labels: []string{"error_type"},
		values: map[string][]string{"error_type": {"http", "auth_rejected", "invalid_response", "acquisition_failed", "configuration"}},
		want:   []string{`mc_token_refresh_failures_total{error_type="http"} >= 1`},
	},
	{
		name: "mc_register_meeting_total", labels: []string{"status"}, values: map[string][]string{"status": {"success", "error"}},
		want: []string{`mc_register_meeting_total{status="success"} == 1`},
	},
	{
		name:    "mc_register_meeting_duration_seconds",
		buckets: []string{"0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf"},
		want:    []string{`mc_register_meeting_duration_seconds_count >= 1`},
	},
	{
		name: "mc_mh_notifications_received_total", labels: []string{"event_type"},
		values: map[string][]string{"event_type": {"connected", "disconnected"}},
		want:   []string{`mc_mh_notifications_received_total{event_type="connected"} == 1`},
	},
	{
		name: "mc_caller_type_rejected_total", labels: []string{"actual_type", "expected_type", "grpc_service"},
		values: map[string][]string{"grpc_service": {"MeetingControllerService", "MediaCoordinationService"}},
		want: []string{`mc_caller_type_rejected_total{grpc_service="MeetingControllerService",` +
			`expected_type="global-controller",actual_type="media-handler"} == 1`},
	},
}

// notBuilt are the metrics of Dark Tower's list that edgemc does not fake
// (Redis; its store histogram takes that role): absent, not zero.
var notBuilt = []string{"mc_redis_latency_seconds"}

// firstEventOnly are metrics whose labels only an event gives (a store
// error, a refused session, a reconnection), none of which this run has.
var firstEventOnly = []string{"mc_store_errors_total", "mc_webtransport_connections_refused_total", "mc_reconnections_total"}

func TestPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (apt-get install prometheus; .ci/run does): not testing against a real Prometheus")
	}
	// A GC, an Auth Controller edgemc gets its token from (refusing once, so
	// that a failed refresh is counted too) and a media handler.
	g := gctest.Start(t)
	g.Accept(faultFast, faultComp)
	ac := actest.Start(t)
	ac.Refuse(http.StatusServiceUnavailable, 1)
	secret := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(secret, []byte(actest.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mh := mhtest.Start(t, "mh-1")
	args := append(gcFaultArgs(t, "mc-faults", g)[:2], "--gc-backoff-base=100ms", "--gc-backoff-max=3s",
		"--fast-heartbeat="+faultFast.String(), "--ac-url="+ac.URL(), "--client-id="+actest.ClientID, "--client-secret-file="+secret)
	mc := startFaultMC(t, "", devissuer.NewIssuer(), args...)
	if _, err := g.WaitRegistrations(testCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	prom := startPrometheus(t, bin, mc.http, testRules(t))
	prom.wait(t, "the first scrape", `up{job="edgemc"} == 1`)

	// Joins, a mute, a leave, in a meeting with a media handler: the first
	// join registers the meeting with it, and it reports a participant.
	m := newMeetingClients(t, mc, "m-prom")
	ctx0, cancel0 := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel0()
	if resp, err := mc.assignMHs(ctx0, "m-prom", []*internalpb.MhAssignment{{
		MhId: "mh-1", WebtransportEndpoint: "https://mh-1.example:4434/", GrpcEndpoint: mh.Endpoint()}}); err != nil || !resp.GetAccepted() {
		t.Fatalf("assign m-prom: %v, %v", resp, err)
	}
	m.join("host-1")
	m.join("user-1")
	m.join("user-2")
	m.roundTrip("user-1", true)
	left := m.readers["user-2"].conn
	delete(m.readers, "user-2")
	if err := left.Close(); err != nil {
		t.Fatal(err)
	}
	m.readers["host-1"].until(t, "user-2 leaving", func(s *pb.ServerMessage) bool { return s.GetParticipantLeft() != nil }, nil)

	if _, err := mh.WaitCalls(ctx0, 1); err != nil {
		t.Fatalf("RegisterMeeting: %v", err)
	}
	notifyConnected(t, mc, "m-prom", "user-1")

	// A join token signed by someone else, and a media handler calling the
	// GC's service.
	refuseForgedToken(t, mc)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err = gctest.Assign(ctx, mc.grpc, mc.issuer.ServiceToken("mh-1", "media-handler"),
		&internalpb.AssignMeetingWithMhRequest{MeetingId: "m-mh", RequestingGcId: "mh-1"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("assignment by a media handler: %v, want PermissionDenied", err)
	}

	// The status page and the metrics show the same numbers.
	st := mc.status(t)
	connected := 0
	for _, mt := range st.Meetings {
		for _, p := range mt.Participants {
			if p.Connected {
				connected++
			}
		}
	}
	for _, q := range []string{
		fmt.Sprintf("mc_meetings_active == %d", st.Capacity.Meetings),
		fmt.Sprintf("mc_participants_active == %d", st.Capacity.Participants),
		fmt.Sprintf("mc_connections_active == %d", connected),
		fmt.Sprintf("mc_gc_registered == %d", b2i(st.GC.Registered)),
		fmt.Sprintf("mc_gc_consecutive_failures == %d", st.GC.ConsecutiveFailures),
		fmt.Sprintf("mc_store_healthy == %d", b2i(st.Store.OK)),
		fmt.Sprintf("mc_certificate_expiration_timestamp_seconds == %d", st.Identity.CertNotAfter.Unix()),
	} {
		prom.wait(t, "the status page's number: "+q, q)
	}

	// The shipped rules are loaded and evaluate, and the GC alert is quiet
	// while the GC is up.
	prom.checkRules(t)
	if r := prom.query(t, `ALERTS{alertname="EdgemcGCUnreachable"}`); len(r) != 0 {
		t.Fatalf("EdgemcGCUnreachable before the outage: %v", r)
	}

	// The GC goes away: the alert fires, and resolves when it is back.
	g.Stop()
	prom.wait(t, "EdgemcGCUnreachable firing", `ALERTS{alertname="EdgemcGCUnreachable",alertstate="firing",job="edgemc"}`)
	g.Restart()
	prom.waitEmpty(t, "EdgemcGCUnreachable resolved", `ALERTS{alertname="EdgemcGCUnreachable"}`)

	// Every metric of Dark Tower's list that edgemc has: its labels, its
	// buckets, and the series this run made.
	for _, dm := range dtMetrics {
		prom.checkMetric(t, dm)
	}
	var exported []string
	for _, name := range notBuilt {
		if r := prom.query(t, fmt.Sprintf(`{__name__=~"%s(_bucket|_sum|_count)?"}`, name)); len(r) != 0 {
			exported = append(exported, name)
		}
	}
	if len(exported) != 0 {
		t.Errorf("metrics of parts edgemc does not have are exported: %v", exported)
	}
	prom.checkDashboard(t)
}

// notifyConnected tells edgemc, as media handler mh-1 does, that sub's
// participant connected to it.
func notifyConnected(t *testing.T, mc *faultMC, meetingID, sub string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := grpc.NewClient(mc.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+mc.issuer.ServiceToken("mh-1", "media-handler"))
	resp, err := internalpb.NewMediaCoordinationServiceClient(conn).NotifyParticipantConnected(ctx,
		&internalpb.NotifyParticipantConnectedRequest{MeetingId: meetingID, ParticipantId: sub, HandlerId: "mh-1"})
	if err != nil || !resp.GetAcknowledged() {
		t.Fatalf("NotifyParticipantConnected: %v, %v", resp, err)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// refuseForgedToken joins with a token signed by another key under the MC
// issuer's kid, which must be refused as UNAUTHORIZED.
func refuseForgedToken(t *testing.T, mc *faultMC) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := mc.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Abort()
	forged := devissuer.NewIssuer().MeetingToken("mallory", "m-prom", devissuer.WithKID(mc.issuer.KID()))
	if err := conn.Send(&pb.ClientMessage{Message: &pb.ClientMessage_JoinRequest{JoinRequest: &pb.JoinRequest{
		MeetingId: "m-prom", JoinToken: forged, ParticipantName: "mallory"}}}); err != nil {
		t.Fatal(err)
	}
	msg, err := conn.Recv(ctx)
	if err != nil || msg.GetError().GetCode() != pb.ErrorCode_UNAUTHORIZED {
		t.Fatalf("forged join token: %v, %v; want UNAUTHORIZED", msg, err)
	}
}

// statusPage is the part of /api/v1/status the test compares.
type statusPage struct {
	Identity struct {
		CertNotAfter time.Time `json:"cert_not_after"`
	} `json:"identity"`
	GC struct {
		Registered          bool `json:"registered"`
		ConsecutiveFailures int  `json:"consecutive_failures"`
	} `json:"gc"`
	Capacity struct {
		Meetings     int `json:"meetings"`
		Participants int `json:"participants"`
	} `json:"capacity"`
	Store struct {
		OK bool `json:"ok"`
	} `json:"store"`
	Meetings []struct {
		Participants []struct {
			Connected bool `json:"connected"`
		} `json:"participants"`
	} `json:"meetings"`
}

func (mc *faultMC) status(t *testing.T) statusPage {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + mc.http + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s statusPage
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("/api/v1/status: %v", err)
	}
	return s
}

// testRules writes the shipped rules with every `for:` shortened to 0s, so
// that an alert fires at its first evaluation, and returns the file.
func testRules(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(shippedRules)
	if err != nil {
		t.Fatal(err)
	}
	rules := regexp.MustCompile(`(?m)^(\s+)for: \S+$`).ReplaceAll(b, []byte("${1}for: 0s"))
	path := filepath.Join(t.TempDir(), "edgemc-rules.yml")
	if err := os.WriteFile(path, rules, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// promServer is a running Prometheus.
type promServer struct {
	url  string
	logs syncBuffer
}

// Intervals of the test's Prometheus: one scrape and one rule evaluation a
// second.
const promConfig = `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: edgemc
    static_configs:
      - targets: [%q]
`

// startPrometheus runs bin scraping target (host:port) with the rules file,
// on a free loopback port, until the test ends.
func startPrometheus(t *testing.T, bin, target, rules string) *promServer {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, fmt.Appendf(nil, promConfig, rules, target), 0o600); err != nil {
		t.Fatal(err)
	}
	// Prometheus takes no port 0: pick a free port, and pick again if
	// another process took it before Prometheus bound it.
	for attempt := 1; ; attempt++ {
		p, err := tryPrometheus(t, bin, config, filepath.Join(dir, fmt.Sprintf("data-%d", attempt)))
		if err == nil {
			return p
		}
		if !strings.Contains(err.Error(), "address already in use") || attempt == 5 {
			t.Fatal(err)
		}
		t.Logf("prometheus did not start (%v); another port", err)
	}
}

func tryPrometheus(t *testing.T, bin, config, data string) (*promServer, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := &promServer{url: "http://" + addr}
	cmd := exec.Command(bin, "--config.file="+config, "--storage.tsdb.path="+data,
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &p.logs, &p.logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Kill()
			<-exited
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", p.logs.String())
		}
	})
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		if resp, err := client.Get(p.url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-tick.C:
		case <-exited:
			return nil, fmt.Errorf("prometheus exited: %s", p.logs.String())
		case <-timeout.C:
			stop()
			return nil, fmt.Errorf("prometheus on %s not ready within %v", addr, waitTimeout)
		}
	}
}

// sample is one series of an instant query's answer.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// apiGet calls Prometheus's HTTP API and decodes data into v; an answer
// other than success fails the test.
func (p *promServer) apiGet(t *testing.T, path string, params url.Values, v any) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(p.url + path + "?" + params.Encode())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status, Error, ErrorType string
		Data                     json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s %v: %v", path, params, err)
	}
	if body.Status != "success" {
		t.Fatalf("%s %v: %s: %s", path, params, body.ErrorType, body.Error)
	}
	if err := json.Unmarshal(body.Data, v); err != nil {
		t.Fatalf("%s %v: %v", path, params, err)
	}
}

// query evaluates expr now; an expression Prometheus refuses fails the test.
func (p *promServer) query(t *testing.T, expr string) []sample {
	t.Helper()
	var data struct {
		ResultType string   `json:"resultType"`
		Result     []sample `json:"result"`
	}
	p.apiGet(t, "/api/v1/query", url.Values{"query": {expr}}, &data)
	if data.ResultType == "scalar" || data.ResultType == "string" {
		return []sample{{}}
	}
	return data.Result
}

// waitFor evaluates expr every scrape interval until done accepts the
// result, or fails the test after waitTimeout.
func (p *promServer) waitFor(t *testing.T, what, expr string, done func([]sample) bool) []sample {
	t.Helper()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		r := p.query(t, expr)
		if done(r) {
			return r
		}
		select {
		case <-tick.C:
		case <-timeout.C:
			t.Fatalf("no %s within %v: %s gives %v", what, waitTimeout, expr, r)
		}
	}
}

// wait waits until expr returns something.
func (p *promServer) wait(t *testing.T, what, expr string) []sample {
	t.Helper()
	return p.waitFor(t, what, expr, func(r []sample) bool { return len(r) > 0 })
}

// waitEmpty waits until expr returns nothing.
func (p *promServer) waitEmpty(t *testing.T, what, expr string) {
	t.Helper()
	p.waitFor(t, what, expr, func(r []sample) bool { return len(r) == 0 })
}

// checkRules checks that Prometheus loaded every shipped alert, has
// evaluated each without error, and that each expression also answers an
// instant query.
func (p *promServer) checkRules(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(shippedRules)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range regexp.MustCompile(`(?m)^\s*- alert: (\w+)$`).FindAllSubmatch(b, -1) {
		want = append(want, string(m[1]))
	}
	type rule struct {
		Name, Query, Health, LastError string
		LastEvaluation                 time.Time
	}
	var rules []rule
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for evaluated := false; !evaluated; {
		var data struct{ Groups []struct{ Rules []rule } }
		p.apiGet(t, "/api/v1/rules", url.Values{"type": {"alert"}}, &data)
		rules = nil
		for _, g := range data.Groups {
			rules = append(rules, g.Rules...)
		}
		evaluated = len(rules) > 0 && !slices.ContainsFunc(rules, func(r rule) bool { return r.LastEvaluation.IsZero() })
		if !evaluated {
			select {
			case <-tick.C:
			case <-timeout.C:
				t.Fatalf("rules not evaluated within %v: %+v", waitTimeout, rules)
			}
		}
	}
	var names []string
	for _, r := range rules {
		names = append(names, r.Name)
		if r.Health != "ok" || r.LastError != "" {
			t.Errorf("rule %s: health %q, error %q", r.Name, r.Health, r.LastError)
		}
		p.query(t, r.Query)
	}
	if !slices.Equal(names, want) {
		t.Errorf("Prometheus loaded alerts %v, want %v", names, want)
	}
}

// checkMetric checks dm's label keys and buckets on every series Prometheus
// holds, and waits for each of its wanted series.
func (p *promServer) checkMetric(t *testing.T, dm dtMetric) {
	t.Helper()
	series := dm.name
	if dm.buckets != nil {
		series += "_bucket"
	}
	r := p.query(t, series)
	if len(r) == 0 {
		t.Errorf("%s: no series", dm.name)
	}
	les := map[string][]string{}
	for _, s := range r {
		var keys []string
		for k, v := range s.Metric {
			switch k {
			case "__name__", "job", "instance":
			case "le":
				rest := maps.Clone(s.Metric)
				delete(rest, "le")
				id := fmt.Sprint(rest)
				les[id] = append(les[id], v)
			default:
				keys = append(keys, k)
				if allowed, ok := dm.values[k]; ok && !slices.Contains(allowed, v) {
					t.Errorf("%s: series %v: %s=%q is none of %v", dm.name, s.Metric, k, v, allowed)
				}
			}
		}
		slices.Sort(keys)
		if !slices.Equal(keys, dm.labels) {
			t.Errorf("%s: series %v has labels %v, want %v", dm.name, s.Metric, keys, dm.labels)
		}
	}
	for id, got := range les {
		slices.SortFunc(got, func(a, b string) int { return compareLE(a, b) })
		if !slices.Equal(got, dm.buckets) {
			t.Errorf("%s %s: buckets %v, want %v", dm.name, id, got, dm.buckets)
		}
	}
	for _, w := range dm.want {
		p.wait(t, w, w)
	}
}

func compareLE(a, b string) int {
	fa, _ := strconv.ParseFloat(a, 64)
	fb, _ := strconv.ParseFloat(b, 64)
	switch {
	case fa < fb:
		return -1
	case fa > fb:
		return 1
	}
	return 0
}

// checkDashboard runs every query of the shipped Grafana dashboard, with
// its variables filled in as Grafana would, and checks that every edgemc
// metric it shows exists, unless it belongs to a part not built yet or
// appears with its first event.
func (p *promServer) checkDashboard(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(shippedDashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$instance", ".+", "$__rate_interval", "1m")
	names := map[string]bool{}
	metricName := regexp.MustCompile(`\b(?:mc|process|go)_[a-z_]+\b`)
	for _, panel := range d.Panels {
		for _, q := range panel.Targets {
			p.query(t, vars.Replace(q.Expr))
			for _, n := range metricName.FindAllString(q.Expr, -1) {
				names[n] = true
			}
		}
	}
	for name := range names {
		base := strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count")
		if slices.Contains(notBuilt, base) || slices.Contains(firstEventOnly, base) {
			continue
		}
		if len(p.query(t, name)) == 0 {
			t.Errorf("the dashboard shows %s, which has no series", name)
		}
	}
}
