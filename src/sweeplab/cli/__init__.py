"""The command-line apps, the top layer: each wires the layers below into one command.

- `train`: ``python -m sweeplab.train`` / ``sweeplab-train`` / ``make train``
- `sweep`: ``python -m sweeplab.sweep`` / ``sweeplab-sweep`` / ``make sweep``
- `rerun`: ``python -m sweeplab.cli.rerun`` / ``sweeplab-rerun`` / ``make rerun``
- `ui`: ``python -m sweeplab.cli.ui`` / ``sweeplab-ui`` / ``make ui``
- `common`: the Hydra app wrapper and what every command prints.
"""
