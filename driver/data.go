package main

import (
	"fmt"
	"strings"

	"dlf/data"

	"github.com/urfave/cli/v2"
)

func dataCommand() *cli.Command {
	return &cli.Command{
		Name:  "data",
		Usage: "manage datasets",
		Subcommands: []*cli.Command{{
			Name:      "fetch",
			Usage:     "put a dataset under <data_dir>/<name>/ (mnist and fashion-mnist offline; others say which files to place where)",
			ArgsUsage: strings.Join(data.Problems(), "|"),
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "data_dir", Value: "data", Usage: "root directory of the datasets"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return fmt.Errorf("data fetch takes one dataset name (%s), got %d arguments", strings.Join(data.Problems(), ", "), c.NArg())
				}
				return data.Fetch(c.Args().First(), c.String("data_dir"), c.App.Writer)
			},
		}},
	}
}
