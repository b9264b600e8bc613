package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// cpuTimes are one CPU's /proc/stat counters (clock ticks).
type cpuTimes struct{ busy, total uint64 }

// readCPU reads the per-CPU lines of /proc/stat ("cpu0", "cpu1", ...).
func readCPU() ([]cpuTimes, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []cpuTimes
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || !strings.HasPrefix(fields[0], "cpu") || fields[0] == "cpu" {
			continue
		}
		var t cpuTimes
		for i, v := range fields[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("bench: /proc/stat: %q: %w", sc.Text(), err)
			}
			if i >= 8 { // guest and guest_nice are included in user and nice
				break
			}
			t.total += n
			if i != 3 && i != 4 { // idle, iowait
				t.busy += n
			}
		}
		out = append(out, t)
	}
	return out, sc.Err()
}

// busy is each CPU's busy share in percent between two readings.
func busy(a, b []cpuTimes) []float64 {
	var out []float64
	for i := 0; i < len(a) && i < len(b); i++ {
		dt := b[i].total - a[i].total
		if dt == 0 {
			out = append(out, 0)
			continue
		}
		out = append(out, 100*float64(b[i].busy-a[i].busy)/float64(dt))
	}
	return out
}
