"""`python -m wisp` is the `wisp` command."""

from wisp.cli.main import main

main()
