"""sweeplab.nn: the deep network in pure NumPy (no MLflow, Hydra or Optuna here).

Examples are columns: X (n_x, m), Y (n_y, m). See `network` for the notation, `steppers`
for how an epoch of training updates a network (directly, or with layer 1 in the dual
form of `dual`), and `buffers` for the memory it trains in (one flat array of parameters,
whose views W[l] and b[l] are).
"""

from sweeplab.nn.activations import ACTIVATIONS, get_activation
from sweeplab.nn.batches import minibatches
from sweeplab.nn.gradcheck import gradient_check
from sweeplab.nn.initializers import INITS, initialize
from sweeplab.nn.losses import OUTPUTS, get_output
from sweeplab.nn.network import DTYPES, Caches, Network, ShapeError, layer_dims_from
from sweeplab.nn.optimizers import OPTIMIZERS, make_optimizer
from sweeplab.nn.steppers import (
    STEPPERS,
    DirectStepper,
    DualStepper,
    Stepper,
    resolve_stepper,
)
from sweeplab.nn.summary import layer_rows, summary

__all__ = [
    "ACTIVATIONS",
    "DTYPES",
    "INITS",
    "OPTIMIZERS",
    "OUTPUTS",
    "STEPPERS",
    "Caches",
    "DirectStepper",
    "DualStepper",
    "Network",
    "ShapeError",
    "Stepper",
    "get_activation",
    "get_output",
    "gradient_check",
    "initialize",
    "layer_dims_from",
    "layer_rows",
    "make_optimizer",
    "minibatches",
    "resolve_stepper",
    "summary",
]
