package packaging

import (
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var releaseHeading = regexp.MustCompile(`^## (v(\d+)\.(\d+)\.(\d+)) \((\d{4}-\d{2}-\d{2})\)$`)

// TestChangelog checks the version scheme of CHANGELOG.md: "Unreleased"
// first, then releases vX.Y.Z, newest first, each a version the packages
// carry as X.Y.Z; and every vX.Y.Z tag of the repository has its section.
func TestChangelog(t *testing.T) {
	var versions []string
	for i, line := range slices.Collect(strings.Lines(readSource(t, "../CHANGELOG.md"))) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "## ") {
			continue
		}
		if len(versions) == 0 && line == "## Unreleased" {
			versions = append(versions, "")
			continue
		}
		m := releaseHeading.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("CHANGELOG.md:%d: heading %q is neither Unreleased (first) nor a release `## vX.Y.Z (YYYY-MM-DD)`", i+1, line)
			continue
		}
		if out, err := exec.Command("sh", "pkgversion.sh", m[1]).Output(); err != nil || strings.TrimSpace(string(out)) != strings.TrimPrefix(m[1], "v") {
			t.Errorf("CHANGELOG.md:%d: %s packages as %q (%v)", i+1, m[1], out, err)
		}
		if prev := versions[len(versions)-1]; prev != "" && exec.Command("dpkg", "--compare-versions", prev[1:], "le", m[1][1:]).Run() == nil {
			t.Errorf("CHANGELOG.md:%d: %s is listed after %s, not newest first", i+1, m[1], prev)
		}
		versions = append(versions, m[1])
	}
	if len(versions) == 0 || versions[0] != "" {
		t.Error("CHANGELOG.md does not start with an Unreleased section")
	}
	out, err := exec.Command("git", "tag", "--list", "v[0-9]*.[0-9]*.[0-9]*").Output()
	if err != nil {
		t.Skipf("git tag: %v", err)
	}
	for _, tag := range strings.Fields(string(out)) {
		if !strings.Contains(tag, "-") && !slices.Contains(versions, tag) {
			t.Errorf("tag %s has no section in CHANGELOG.md", tag)
		}
	}
}
