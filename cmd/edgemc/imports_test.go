package main

import (
	"os"
	"os/exec"
	"path"
	"strings"
	"testing"
)

// modulePath is edgemc's Go module.
const modulePath = "github.com/edgemc/edgemc"

// isTestPackage reports whether an import path names test-only code: the
// standard testing packages, or a package whose name ends in "test"
// (gctest, webtest, ...), which exist only to serve tests.
func isTestPackage(importPath string, standard bool) bool {
	if importPath == "testing" || strings.HasPrefix(importPath, "testing/") {
		return true
	}
	return !standard && strings.HasSuffix(path.Base(importPath), "test")
}

// goList runs `go list` with args from this package's directory, in the
// environment of `make build` (CGO_ENABLED=0), and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	cmd := exec.Command(goBin, append([]string{"list"}, args...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestImportsNoTestPackages proves that the edgemc binary links no test
// helper: lab mode's development GC and token issuer live in gc/devgc and
// gc/devissuer, and test-only helpers live in *test packages that no
// production code imports.
func TestImportsNoTestPackages(t *testing.T) {
	t.Run("binary", func(t *testing.T) {
		deps := goList(t, "-deps", "-f", "{{.ImportPath}} {{.Standard}}", ".")
		seen := false
		for _, line := range deps {
			importPath, standard, _ := strings.Cut(line, " ")
			if importPath == modulePath+"/appliance" {
				seen = true
			}
			if isTestPackage(importPath, standard == "true") {
				t.Errorf("the edgemc binary depends on test package %s", importPath)
			}
		}
		if !seen {
			t.Fatalf("go list -deps did not list %s/appliance; output:\n%s", modulePath, strings.Join(deps, "\n"))
		}
	})
	t.Run("module", func(t *testing.T) {
		// Imports lists the imports of non-test files only; a *test package
		// may import another.
		pkgs := goList(t, "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", modulePath+"/...")
		for _, line := range pkgs {
			fields := strings.Fields(line)
			if len(fields) == 0 || isTestPackage(fields[0], false) {
				continue
			}
			for _, imp := range fields[1:] {
				if imp == "testing" || strings.HasPrefix(imp, "testing/") ||
					strings.HasPrefix(imp, modulePath+"/") && isTestPackage(imp, false) {
					t.Errorf("%s (not test-only code) imports test package %s", fields[0], imp)
				}
			}
		}
		if len(pkgs) < 5 {
			t.Fatalf("go list %s/... listed only %d packages", modulePath, len(pkgs))
		}
	})
}
