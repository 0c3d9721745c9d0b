"""The implementations of the `dualstack` subcommands; controlplane/cli.py is the shell around them."""
