package config

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

var withLine = regexp.MustCompile(`^chain\.yaml:[0-9]+: `)

// FuzzParse mutates valid chain files: Parse must never panic, and every
// error must name the file and a line (an empty document has no line).
func FuzzParse(f *testing.F) {
	f.Add(valid)
	f.Add(withFirewall)
	f.Add(withLB)
	f.Add("ports:\n  - name: a\n    interface: x0\nchain: []\n")
	f.Fuzz(func(t *testing.T, text string) {
		_, err := Parse("chain.yaml", []byte(text))
		if err == nil {
			return
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("error of type %T: %v", err, err)
		}
		if ce.Line == 0 && !strings.Contains(ce.Msg, "empty file") {
			t.Fatalf("error without a line: %v", err)
		}
		if ce.Line > 0 && !withLine.MatchString(err.Error()) {
			t.Fatalf("error does not start with file:line: %v", err)
		}
	})
}
