package cli

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func statsCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "print a running instance's counters (from its metrics endpoint)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := &http.Client{Timeout: 5 * time.Second}
			resp, err := c.Get("http://" + addr + "/metrics")
			if err != nil {
				return fmt.Errorf("stats: no xnf metrics at %s (is xnf run going, with metrics on?): %w", addr, err)
			}
			defer resp.Body.Close()
			return PrintStats(resp.Body, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:9464", "metrics address of the running instance")
	return cmd
}

// PrintStats turns Prometheus text exposition of xnf_* metrics into a table.
func PrintStats(r io.Reader, out io.Writer) error {
	type row struct{ name, labels, value string }
	var rows []row
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "xnf_") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name, labels := line[:sp], ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, labels = name[:i], strings.Trim(name[i:], "{}")
		}
		v := line[sp+1:]
		if v == "0" {
			continue // keep the table to what happened
		}
		rows = append(rows, row{name, strings.ReplaceAll(labels, `"`, ""), v})
	}
	if err := sc.Err(); err != nil {
		return err
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tLABELS\tVALUE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.TrimPrefix(r.name, "xnf_"), r.labels, r.value)
	}
	return tw.Flush()
}
