"""`python -m quorum ...` is the `quorum` command."""

from quorum.cli import main

main()
