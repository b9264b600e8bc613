package config

import (
	"time"

	"github.com/xnfdev/xnf/nf/conntrack"
)

// FragmentsConfig is the YAML of a stage's fragment tracking (the
// conntrack table's fragment tracker, see nf/conntrack's doc,
// "Fragments"):
//
//	fragments: {cache: 1024, timeout: 2s}
type FragmentsConfig struct {
	// Cache is how many datagrams are followed at once, per worker
	// (default 1024; -1 turns fragment tracking off).
	Cache int `yaml:"cache"`
	// Timeout is how long after its first fragment a datagram's other
	// fragments are followed (default 2s).
	Timeout string `yaml:"timeout"`
}

func (c FragmentsConfig) set() bool { return c != FragmentsConfig{} }

// tracker builds the tracker's configuration; errors name the field.
func (c FragmentsConfig) tracker(sc *StageConfig, at string) (conntrack.FragmentConfig, error) {
	var out conntrack.FragmentConfig
	if c.Cache < -1 || c.Cache > 1<<24 {
		return out, sc.Errorf(at+".cache", "%d: expected datagrams followed at once, 1 to 16777216, 0 for the default or -1 for none", c.Cache)
	}
	out.Datagrams = c.Cache
	if c.Timeout != "" {
		v, err := time.ParseDuration(c.Timeout)
		if err != nil || v <= 0 {
			return out, sc.Errorf(at+".timeout", "%q: expected a duration such as 2s", c.Timeout)
		}
		out.Timeout = v
	}
	return out, nil
}

// fragmentsFor sets the fragment tracking of a stage's new conntrack
// table; a stage that shares an earlier stage's table may not set it,
// since that table's tracker is the earlier stage's.
func (c FragmentsConfig) fragmentsFor(ctx *BuildContext, sc *StageConfig, cc *conntrack.Config) error {
	if ctx.SharedConntrack() != nil {
		if c.set() {
			return sc.Errorf("fragments", "this stage shares the conntrack table of an earlier stage, whose fragment tracking applies: set fragments there")
		}
		return nil
	}
	fc, err := c.tracker(sc, "fragments")
	if err != nil {
		return err
	}
	cc.Fragments = fc
	return nil
}
