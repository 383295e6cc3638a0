"""`python -m zoo ...` runs the CLI (the form `accelerate launch -m zoo adapt ...` uses)."""

from zoo.cli import main

main()
