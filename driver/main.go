// Command driver is dlf's command-line tool: it trains DLF and Glow models, evaluates and samples
// them, interpolates between images, benchmarks layers against the machine's floors (and the
// PyTorch twin), fetches datasets and reports what hardware and kernels it found.
//
// Flags are named as in the reference implementation where they mean the same (dlf-spec §6.1).
// Every command validates its flags, the dataset and any checkpoint before doing any work and exits
// non-zero with one sentence that names the bad flag or file.
//
// Choices made here (see also README, "Training"):
//   - `train --data_dir` is the directory holding the problem's files, as in the reference (default
//     data/<problem>, where `driver data fetch --data_dir data <problem>` puts them).
//   - On the CPU, `train` without --preset or size flags uses the problem's preset reduced to depth 8,
//     width 64, batch 64 (cpuDefaults), so that a 2-core machine shows progress in minutes, split
//     over one in-process data-parallel replica per core (cpuDefaultRanks); on a GPU it trains the
//     preset as published.
//   - A results directory with checkpoints is resumed; its configuration wins over the preset, and a
//     flag that would change the parameters' shapes is an error.
//   - The test set's dequantisation noise and the sample grids' latent noise are fixed Philox
//     streams, so metrics and pictures of different epochs are comparable.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strings"

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
	app := &cli.App{
		Name:                 "driver",
		Usage:                "train, evaluate and sample Dynamic Linear Flow and Glow models",
		EnableBashCompletion: true,
		OnUsageError:         usageError,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a Go CPU profile of the whole command to this file (go tool pprof)"},
		},
		Before: startProfile,
		After:  stopProfile,
		Commands: []*cli.Command{
			trainCommand(),
			evalCommand(),
			sampleCommand(),
			compareCommand(),
			interpolateCommand(),
			benchCommand(),
			infoCommand(),
			dataCommand(),
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = usageError
	}
	app.Action = unknownCommand
	return app
}

// unknownCommand runs when the first argument names no command: it names the argument and lists the
// commands (urfave/cli would print "No help topic for ..."); without arguments it shows the help.
func unknownCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowAppHelp(c)
	}
	var names []string
	for _, cmd := range c.App.Commands {
		if !cmd.Hidden && cmd.Name != "help" {
			names = append(names, cmd.Name)
		}
	}
	return fmt.Errorf("unknown command %q; the commands are %s (see driver --help)", c.Args().First(), joinNames(names))
}

// usageError turns a flag-parsing failure into one sentence (the default prints the whole help).
func usageError(c *cli.Context, err error, _ bool) error {
	if c != nil && c.Command != nil && c.Command.Name != "" {
		return fmt.Errorf("%s: %v (see driver %s --help)", c.Command.Name, err, c.Command.Name)
	}
	return fmt.Errorf("%v (see driver --help)", err)
}

// joinNames lists names for messages.
func joinNames(names []string) string { return strings.Join(names, ", ") }

// trimPkg drops a package prefix such as "dlf: " or "data: " from an error for a user message.
func trimPkg(err error) string {
	s := err.Error()
	for _, p := range []string{"dlf: ", "data: ", "optim: ", "safetensors: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

// profileFile is the open --cpuprofile file while a command runs.
var profileFile *os.File

// startProfile starts the CPU profile of --cpuprofile (a flag before the command name).
func startProfile(c *cli.Context) error {
	path := c.String("cpuprofile")
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpuprofile %s: %v", path, err)
	}
	profileFile = f
	return nil
}

// stopProfile ends the CPU profile, if one runs.
func stopProfile(*cli.Context) error {
	if profileFile == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := profileFile.Close()
	profileFile = nil
	if err != nil {
		return fmt.Errorf("--cpuprofile: %v", err)
	}
	return nil
}
