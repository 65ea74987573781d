"""Data: course-layout HDF5 in, column-stacked NumPy arrays out.

    from sweeplab.data import load_dataset
    ds = load_dataset(cfg.data, seed=cfg.seed, dtype="float32")
    ds.X_train  # (n_x, m_train)
"""

from sweeplab.data.dataset import Dataset, load_dataset
from sweeplab.data.errors import DataError

__all__ = ["DataError", "Dataset", "load_dataset"]
