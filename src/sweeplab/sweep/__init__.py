"""A sweep: an Optuna study over the run config, each trial a tracked `train.run`.

- `space`: the search space, in Hydra's override grammar, as Optuna distributions;
- `study`: the Optuna study (storage, sampler, pruner) and how trials are counted;
- `journal`: the journal file checked before it is opened (a torn last record dropped);
- `controller`: checks the sweep, opens the study and the MLflow parent run, runs workers;
- `worker`: runs one trial (a tracked run, reported to the pruner) and the loop of trials;
- `report`: what the sweep prints and puts on the parent run; `view`: its UI view.

``python -m sweeplab.sweep`` is the command-line app (`sweeplab.cli.sweep`).
"""
