package cli

import (
	"fmt"
	"io"

	"github.com/assaymcp/assay/internal/events"
)

// markOutputs draws this run's token and returns stdout and stderr marked
// with it (see events.Marker): from here on every line assay writes starts
// with the token, which the command it judges cannot know. In text mode the
// first marked line says so.
func markOutputs(format events.Format, stdout, stderr io.Writer) (out, errw *events.Marker) {
	tok := events.NewToken()
	out, errw = events.NewMarker(stdout, tok), events.NewMarker(stderr, tok)
	if format == events.Text {
		fmt.Fprintf(errw, "assay: this run's token is %s: every line assay writes starts with it; the command cannot read it, so a line without it is not assay's\n", tok)
	}
	return out, errw
}
