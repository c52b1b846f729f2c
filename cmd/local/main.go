// Command local is the project's main job on a machine without a cloud
// (hack/local-deploy.sh runs it as root): the model image built and pushed to
// a registry on 127.0.0.1, the program deployed for real to a throwaway local
// cluster with a real node, then the deployed pods asked once through the
// Service's NodePort on 127.0.0.1.
//
//	go run ./cmd/local [-serve] [image]
//
// -serve keeps the cluster serving until Ctrl-C. It runs from the
// repository's root (Pulumi.yaml, model/). It is a command of its own so that
// the program binary `pulumi up` compiles (the root package) links none of
// the local cloud.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/planets-mlops/deploy/internal/localcloud/deploy"
	"github.com/planets-mlops/deploy/internal/program"
)

func main() {
	err := runLocal(os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "local:", err)
		os.Exit(1)
	}
}

// sampleImage is the image `local` asks the model about: a held-out planet
// from the parity fixtures, so it works without the dataset.
const sampleImage = "model/testdata/parity/original_128.jpg"

// runLocal runs the main job with the command's arguments, reporting to out.
func runLocal(args []string, out io.Writer) error {
	flags := flag.NewFlagSet("local", flag.ContinueOnError)
	flags.SetOutput(os.Stderr)
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "usage: go run ./cmd/local [-serve] [image]   (as root, from the repository's root; or hack/local-deploy.sh)")
		flags.PrintDefaults()
	}
	hold := flags.Bool("serve", false, "keep the cluster serving after the prediction, until Ctrl-C")
	if err := flags.Parse(args); err != nil {
		return err
	}
	image := sampleImage
	switch flags.NArg() {
	case 0:
	case 1:
		image = flags.Arg(0)
	default:
		flags.Usage()
		return fmt.Errorf("want at most one image to ask the model about, got %d arguments", flags.NArg())
	}
	bin := os.Getenv("MLOPS_TOOLCHAIN_BIN")
	if bin == "" {
		return errors.New("set MLOPS_TOOLCHAIN_BIN first, or run hack/local-deploy.sh, which does")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return deploy.Run(ctx, deploy.Options{
		Program:      program.Program,
		ToolchainBin: bin,
		ProjectDir:   ".",
		Image:        image,
		Hold:         *hold,
		Out:          out,
		BuildLog:     os.Stderr,
	})
}
