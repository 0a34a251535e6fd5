// Command driver is dlf's command-line tool: it trains DLF and Glow models, evaluates and samples
// them, benchmarks layers, fetches datasets and reports what hardware and kernels it found.
//
// Every command validates its flags before doing any work and exits non-zero with one sentence that
// names the bad flag or file.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "driver: %v\n", err)
		os.Exit(1)
	}
}

// newApp builds the command tree; tests run it in-process.
func newApp() *cli.App {
	return &cli.App{
		Name:                 "driver",
		Usage:                "train, evaluate and sample Dynamic Linear Flow and Glow models",
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			infoCommand(),
			dataCommand(),
		},
	}
}
