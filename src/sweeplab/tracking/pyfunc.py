"""The network as an MLflow pyfunc model: rows in (MLflow's convention), labels out.

Logged as "models from code": MLflow copies this file beside the HDF5 weights and runs it
at load time, so nothing is pickled.

``mlflow.pyfunc.load_model("models:/<model id>").predict(X_rows)`` gives the labels the
in-process network predicts for ``X_rows.T``. Input rows are features as the network saw
them (flattened and scaled the way the run's data config says).
"""

from __future__ import annotations

from typing import Any

import mlflow.models
import mlflow.pyfunc
import numpy as np

from sweeplab.tracking import model_file


class NetworkModel(mlflow.pyfunc.PythonModel):
    # The logged signature (a float tensor (-1, n_x)) is the schema. MLflow would read one
    # from predict's type hints, or warn on every model logged that there are none; this
    # flag (and predict's bare arguments) keep it from doing either.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:  # MLflow requires the name `context`
        self.net, self.classes = model_file.load(context.artifacts["network"])

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """Labels (m,) for model_input (m, n_x): one example per row."""
        X = np.asarray(model_input, dtype=self.net.dtype)
        if X.ndim == 1:
            X = X[None, :]
        # MLflow passes one example per row; the network takes examples as columns.
        return self.net.predict(np.ascontiguousarray(X.T))


mlflow.models.set_model(NetworkModel())
