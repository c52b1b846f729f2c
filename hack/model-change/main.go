// Command model-change prints, as Markdown, what a pull request does to the
// model (internal/modelreport): the pull request's model report beside the
// default branch's, or that the model is unchanged. hack/preview-comment.sh
// puts it in the preview comment.
//
// Usage: go run ./hack/model-change [-baseline <default branch's report>] [-events <preview event log>] model/artifacts/report.json
//
// An empty or missing -baseline means the default branch has no report; an
// empty or missing -events (a preview that failed early) leaves the
// fingerprints out, and the reports alone say whether the model changed.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/planets-mlops/deploy/internal/modelreport"
)

func main() {
	baseline := flag.String("baseline", "", "the default branch's model report")
	events := flag.String("events", "", "the preview's event log (pulumi preview --event-log)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: go run ./hack/model-change [-baseline <report>] [-events <events.jsonl>] model/artifacts/report.json")
		os.Exit(2)
	}
	if err := run(*baseline, *events, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "model-change:", err)
		os.Exit(1)
	}
}

func run(baseline, events, report string) error {
	var c modelreport.Change
	var err error
	if c.New, err = modelreport.ReadFile(report); err != nil {
		return err
	}
	if baseline != "" {
		c.Old, err = modelreport.ReadFile(baseline)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if events != "" {
		f, err := os.Open(events)
		switch {
		case err == nil:
			defer f.Close()
			if c.OldFingerprint, c.NewFingerprint, err = modelreport.Fingerprints(f); err != nil {
				return err
			}
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	fmt.Print(c.Markdown())
	return nil
}
