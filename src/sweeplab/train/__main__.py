"""python -m sweeplab.train [hydra overrides]: one tracked run (`sweeplab.cli.train`)."""

from sweeplab.cli.train import main

main()
