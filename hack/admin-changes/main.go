// Command admin-changes reads the event log of a `pulumi preview`
// (--event-log) on stdin and prints, as Markdown, the planned changes that
// need an admin's `pulumi up` (see internal/planreview). It prints nothing
// when CI can apply the whole plan.
//
// Usage: go run ./hack/admin-changes < events.jsonl
package main

import (
	"fmt"
	"os"

	"github.com/planets-mlops/deploy/internal/planreview"
)

func main() {
	changes, err := planreview.AdminChanges(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "admin-changes:", err)
		os.Exit(1)
	}
	fmt.Print(planreview.Markdown(changes))
}
