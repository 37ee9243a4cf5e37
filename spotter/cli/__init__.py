"""The `spotter` command: `main` parses arguments (fast, no torch import for --help) and hands each
subcommand to `commands`, which makes one call into the library; `demo` is the demo job."""

from spotter.cli.main import main

__all__ = ["main"]
