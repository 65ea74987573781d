"""python -m sweeplab.sweep [hydra overrides]: run a sweep (`sweeplab.cli.sweep`)."""

from sweeplab.cli.sweep import main

main()
