package packaging

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// shippedAlerts are the alerts edgemc-rules.yml must define, one for each
// condition an edge host is watched for.
var shippedAlerts = []string{
	"EdgemcDown", "EdgemcNotReady", "EdgemcGCUnreachable", "EdgemcStoreUnhealthy", "EdgemcActorPanic",
	"EdgemcHighJoinFailureRate", "EdgemcHighJoinLatency", "EdgemcCapacityHigh",
	"EdgemcCertificateExpiringSoon", "EdgemcTokenRefreshFailing",
}

// promtool runs promtool with args in dir and fails the test on a non-zero
// exit.
func promtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "promtool", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func matches(re, text string) []string {
	var out []string
	for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestPrometheusRules checks the shipped rules with promtool and runs their
// unit tests, which must test every alert.
func TestPrometheusRules(t *testing.T) {
	needTool(t, "promtool")
	out := promtool(t, "prometheus", "check", "rules", "edgemc-rules.yml")
	if !strings.Contains(out, "SUCCESS: 10 rules found") {
		t.Errorf("promtool check rules: %s", out)
	}
	promtool(t, "prometheus", "test", "rules", "edgemc-rules_test.yml")

	alerts := matches(`(?m)^\s*- alert: (\w+)$`, readSource(t, "prometheus/edgemc-rules.yml"))
	if !slices.Equal(alerts, shippedAlerts) {
		t.Errorf("alerts %v, want %v", alerts, shippedAlerts)
	}
	tested := matches(`(?m)^\s*alertname: (\w+)$`, readSource(t, "prometheus/edgemc-rules_test.yml"))
	for _, a := range alerts {
		if !slices.Contains(tested, a) {
			t.Errorf("no unit test for %s", a)
		}
	}
	// Every alert that waits has a `for:` line the end-to-end test can
	// shorten (cmd/edgemc's TestPrometheus).
	if n := len(matches(`(?m)^\s+for: (\S+)$`, readSource(t, "prometheus/edgemc-rules.yml"))); n != len(alerts)-1 {
		t.Errorf("%d for: lines, want %d (all alerts but EdgemcActorPanic)", n, len(alerts)-1)
	}
}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	UID, Title string
	Templating struct {
		List []struct{ Name, Type string }
	}
	Panels []struct {
		ID          int
		Type, Title string
		Description string
		Datasource  struct{ UID string }
		GridPos     struct{ X, Y, W, H int }
		Targets     []struct{ Expr, RefID string }
	}
}

// TestGrafanaDashboard checks that the shipped dashboard is one Grafana can
// import: unique ids, panels inside the 24-column grid without overlap,
// every query on the dashboard's data source variable. The queries are run
// against a real Prometheus by cmd/edgemc's TestPrometheus.
func TestGrafanaDashboard(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal([]byte(readSource(t, "grafana/edgemc.json")), &d); err != nil {
		t.Fatalf("grafana/edgemc.json: %v", err)
	}
	if d.UID != "edgemc" || d.Title != "edgemc" {
		t.Errorf("uid %q, title %q", d.UID, d.Title)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name+":"+v.Type)
	}
	if !slices.Equal(vars, []string{"datasource:datasource", "instance:query"}) {
		t.Errorf("variables %v", vars)
	}
	ids := map[int]bool{}
	taken := map[[2]int]string{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
			t.Errorf("%q: grid position %+v", p.Title, p.GridPos)
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := taken[[2]int{x, y}]; ok {
					t.Fatalf("%q overlaps %q", p.Title, other)
				}
				taken[[2]int{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || p.Description == "" || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %d %q: needs a title, a description, the ${datasource} variable and queries", p.ID, p.Title)
		}
		for _, q := range p.Targets {
			queries++
			if !strings.Contains(q.Expr, `instance=~"$instance"`) {
				t.Errorf("%q: query %s is not limited to $instance", p.Title, q.Expr)
			}
		}
	}
	if queries == 0 {
		t.Error("no queries")
	}
}
