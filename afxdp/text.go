package afxdp

import (
	"fmt"
	"strings"
)

// Text forms, so configuration decoders (YAML, flags) parse a mode or a
// policy once, into the type, and report a bad value where it was written.

// UnmarshalText parses what ParseAttachMode accepts.
func (m *AttachMode) UnmarshalText(b []byte) error {
	v, err := ParseAttachMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalText is the mode's name.
func (m AttachMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// ParseZeroCopy parses "auto" (or ""), "require" (or "required", "on") and
// "off" (or "copy").
func ParseZeroCopy(s string) (ZeroCopy, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return ZeroCopyAuto, nil
	case "require", "required", "on":
		return ZeroCopyRequire, nil
	case "off", "copy":
		return ZeroCopyOff, nil
	}
	return 0, fmt.Errorf("unknown zero-copy policy %q (expected auto, require or off)", s)
}

// UnmarshalText parses what ParseZeroCopy accepts.
func (z *ZeroCopy) UnmarshalText(b []byte) error {
	v, err := ParseZeroCopy(string(b))
	if err != nil {
		return err
	}
	*z = v
	return nil
}

// MarshalText is the policy's name.
func (z ZeroCopy) MarshalText() ([]byte, error) { return []byte(z.String()), nil }
