package cli

import (
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/assaymcp/assay/internal/metrics"
)

// ---- --metrics (issue #14), for run and monitor ----

const metricsUsage = "serve Prometheus metrics at http://`ADDR`/metrics (PORT or :PORT: on 127.0.0.1; give a host, e.g. 0.0.0.0:9464, to listen elsewhere)"

func registerMetrics(fl *pflag.FlagSet, addr *string) {
	fl.StringVar(addr, "metrics", "", metricsUsage)
}

// startMetrics serves the metrics when --metrics was given, and says
// where on stderr; nil, nil without it.
func startMetrics(addr string, stderr io.Writer) (*metrics.Metrics, *metrics.Server, error) {
	if addr == "" {
		return nil, nil, nil
	}
	m := metrics.New()
	srv, err := m.Serve(addr)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(stderr, "assay: metrics at %s\n", srv.URL)
	return m, srv, nil
}

// ---- end of --metrics ----
