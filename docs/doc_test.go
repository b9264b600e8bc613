// Package docs holds the guides; its test compiles their Go code.
package docs

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// block is one ```go code block of a guide.
type block struct {
	line int // of the block's first code line in the guide
	code string
	pkg  string
}

var packageClause = regexp.MustCompile(`(?m)^package (\w+)\s*$`)

// goBlocks extracts the ```go blocks of a markdown file. Fences may be
// indented (inside a list); the indentation is removed.
func goBlocks(t *testing.T, path string) []block {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []block
	var cur *block
	var indent string
	var lines []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		trimmed := strings.TrimLeft(text, " \t")
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```go") && strings.TrimSpace(trimmed) == "```go":
			cur, indent, lines = &block{line: n + 1}, text[:len(text)-len(trimmed)], nil
		case cur != nil && strings.TrimSpace(text) == "```":
			cur.code = strings.Join(lines, "\n") + "\n"
			if m := packageClause.FindStringSubmatch(cur.code); m != nil {
				cur.pkg = m[1]
			}
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			lines = append(lines, strings.TrimPrefix(text, indent))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: a go block is never closed", path, cur.line-1)
	}
	return out
}

func goTool(t *testing.T) string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	// go test runs with the toolchain's bin on PATH; fall back to the
	// usual install location.
	p := "/usr/local/go/bin/go"
	if _, err := os.Stat(p); err != nil {
		t.Skip("skipped: no go command to compile the guide's code with")
	}
	return p
}

// TestWritingAStageCompiles builds every ```go block of
// writing-a-stage.md. Blocks are whole files (package clause and
// imports); blocks with the same package clause form one package, and a
// block that imports "testing" is a _test.go file of it. Each file starts
// with a //line directive, so errors point at the guide's lines.
// Illustrations that are not meant to compile are fenced as ```text.
func TestWritingAStageCompiles(t *testing.T) { compileGuide(t, "writing-a-stage.md", 5) }

// TestWritingAPortCompiles does the same for writing-a-port.md.
func TestWritingAPortCompiles(t *testing.T) { compileGuide(t, "writing-a-port.md", 2) }

func compileGuide(t *testing.T, guide string, minBlocks int) {
	blocks := goBlocks(t, guide)
	if len(blocks) < minBlocks {
		t.Fatalf("%s has %d go blocks; the extraction is broken or the guide lost its code", guide, len(blocks))
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	// Inside the module, so the blocks import xnf as a user's program would
	// (testdata keeps go test ./... and go vet ./... away from it).
	root, err := os.MkdirTemp("testdata", "guide-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(root)
		os.Remove("testdata") // only if nothing else is in it
	})
	var pkgs []string
	for i, b := range blocks {
		if b.pkg == "" {
			t.Errorf("%s:%d: a go block without a package clause: make it a whole file, or fence it as text", guide, b.line)
			continue
		}
		dir := filepath.Join(root, b.pkg)
		if !slices.Contains(pkgs, dir) {
			pkgs = append(pkgs, dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		name := fmt.Sprintf("block%02d.go", i)
		if strings.Contains(b.code, `"testing"`) {
			name = fmt.Sprintf("block%02d_test.go", i)
		}
		src := fmt.Sprintf("//line %s:%d\n%s", guide, b.line, b.code)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"vet"}
	for _, p := range pkgs {
		args = append(args, "./"+filepath.ToSlash(p))
	}
	cmd := exec.Command(goTool(t), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the guide's Go code does not build (go %s):\n%s", strings.Join(args, " "), out)
	}
	// The test blocks must also pass: they are what the guide promises.
	args[0] = "test"
	args = slices.Insert(args, 1, "-count=1")
	cmd = exec.Command(goTool(t), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the guide's tests fail (go %s):\n%s", strings.Join(args, " "), out)
	}
}
