"""Load a configured dataset as column-stacked arrays, the course's orientation.

`load_dataset(cfg, seed=...)` reads HDF5 (the course's files, any file in that layout, or
a cached built-in), carves a stratified validation split out of the training file, scales,
optionally standardises, and returns a frozen `Dataset` with X (n_x, m) and Y (n_y, m).

Rules:
- Images are flattened as the course does, `X_rows.reshape(m, -1).T`.
- X is divided by `cfg.scale` if set, else 255 for uint8 X, else 16 for digits, else 1.
- Standardisation (when `cfg.standardize`, and always for breast_cancer) uses the mean
  and std of the training split only (a constant feature gets std 1).
- The validation split comes from the training file only, drawn with
  `np.random.default_rng(seed)`; the test file is only ever read and transformed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sweeplab.data.builtin import GENERATORS, builtin_defaults, ensure_builtin
from sweeplab.data.errors import DataError
from sweeplab.data.h5 import read_split
from sweeplab.data.split import fingerprint, stratified_split

if TYPE_CHECKING:
    from sweeplab.config import DataConfig

@dataclass(frozen=True, eq=False)
class Dataset:
    """Arrays of one run, examples as columns. Arrays are read-only.

    X_*: (n_x, m) C-contiguous, dtype as asked. Y_*: (1, m) 0/1 for 2 classes without
    one-hot, else one-hot (n_classes, m), same dtype as X. y_*: (m,) int64 labels.
    The val arrays are None when val_fraction == 0, the test arrays when there is no
    test file. `fingerprint` is a sha256 over every array and the class names.
    """

    name: str
    classes: tuple[str, ...]
    X_train: np.ndarray = field(repr=False)
    Y_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    X_val: np.ndarray | None = field(repr=False)
    Y_val: np.ndarray | None = field(repr=False)
    y_val: np.ndarray | None = field(repr=False)
    X_test: np.ndarray | None = field(repr=False)
    Y_test: np.ndarray | None = field(repr=False)
    y_test: np.ndarray | None = field(repr=False)
    fingerprint: str
    source: str

    @property
    def n_x(self) -> int:
        return self.X_train.shape[0]

    @property
    def n_y(self) -> int:
        return self.Y_train.shape[0]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def m_train(self) -> int:
        return self.X_train.shape[1]

    @property
    def m_val(self) -> int:
        return 0 if self.X_val is None else self.X_val.shape[1]

    @property
    def m_test(self) -> int:
        return 0 if self.X_test is None else self.X_test.shape[1]


def load_dataset(
    cfg: DataConfig,
    *,
    seed: int,
    dtype: str = "float64",
    one_hot: bool | None = None,
    cache_dir: Path | None = None,
) -> Dataset:
    """Load `cfg.name` as a `Dataset` (see the module docstring for the rules).

    seed: draws the validation split. dtype: of X and Y. one_hot: None = one-hot when
    there are more than 2 classes, else a single 0/1 row (pass True for a softmax output
    on 2 classes). cache_dir: where built-ins are cached (default cfg.dir, else
    "data/builtin"). Paths are relative to the working directory.
    """
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype={dtype!r}: expected a float dtype such as float64 or float32")
    train_path, test_path, keys, hint = _sources(cfg, cache_dir)
    x_tr, y_tr, x_te, y_te, ck = keys
    # A damaged cached built-in is ours to rebuild; anything else came from elsewhere.
    damaged = ("delete it and the next run generates it again" if cfg.name in GENERATORS
               else "copy it again from its source")
    X_rows, y, classes = read_split(train_path, x_tr, y_tr, ck, missing_hint=hint,
                                    damaged_hint=damaged)
    test = None
    if test_path is not None:
        test = read_split(test_path, x_te, y_te, ck, classes=classes, missing_hint=hint,
                          damaged_hint=damaged)
        if test[0].shape[1:] != X_rows.shape[1:]:
            raise DataError(f"{test_path}: '{x_te}' examples have shape {test[0].shape[1:]}, "
                            f"expected {X_rows.shape[1:]} as in {train_path} '{x_tr}'")
    n_classes = len(classes)
    if n_classes < 2:
        raise DataError(f"{train_path}: '{y_tr}' has {n_classes} class {classes}; "
                        "expected at least 2")
    one_hot = n_classes > 2 if one_hot is None else one_hot
    if not one_hot and n_classes > 2:
        raise DataError(f"{train_path}: {n_classes} classes cannot be one 0/1 row; "
                        "expected one_hot=True (or None) for more than 2 classes")

    # Index rows in their stored dtype (cheap for uint8) so each split converts only once.
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {"train": (X_rows, y)}
    if cfg.val_fraction > 0:
        keep, held = stratified_split(y, cfg.val_fraction, np.random.default_rng(seed))
        if held.size == 0:
            raise _no_validation(cfg.val_fraction, train_path, y)
        parts = {"train": (X_rows[keep], y[keep]), "val": (X_rows[held], y[held])}
    if test is not None:
        parts["test"] = (test[0], test[1])

    scale = _scale(cfg, X_rows.dtype)
    X = {k: _to_columns(rows, scale, dt) for k, (rows, _) in parts.items()}
    if cfg.standardize or builtin_defaults(cfg.name)["standardize"]:
        _standardize(X)
    Y = {k: _targets(labels, n_classes, one_hot, dt) for k, (_, labels) in parts.items()}
    yy = {k: labels for k, (_, labels) in parts.items()}

    arrays = {f"{a}_{k}": d[k] for k in parts for a, d in (("X", X), ("Y", Y), ("y", yy))}
    for a in arrays.values():
        a.flags.writeable = False  # the fingerprint must stay true to the arrays
    get = arrays.get
    return Dataset(
        name=cfg.name,
        classes=tuple(classes),
        X_train=get("X_train"), Y_train=get("Y_train"), y_train=get("y_train"),
        X_val=get("X_val"), Y_val=get("Y_val"), y_val=get("y_val"),
        X_test=get("X_test"), Y_test=get("Y_test"), y_test=get("y_test"),
        fingerprint=fingerprint({**arrays, "classes": np.array(classes, dtype=str)}),
        source=f"train={train_path}" + (f", test={test_path}" if test_path else ""),
    )


_COURSE_KEYS = ("train_set_x", "train_set_y", "test_set_x", "test_set_y", "list_classes")


def _sources(
    cfg: DataConfig, cache_dir: Path | None
) -> tuple[Path, Path | None, tuple[str, str, str, str, str], str]:
    """(train path, test path or None, keys, hint for a missing file) for cfg.name."""
    keys = (cfg.x_train_key, cfg.y_train_key, cfg.x_test_key, cfg.y_test_key, cfg.classes_key)
    if cfg.name in GENERATORS:
        folder = Path(cache_dir) if cache_dir is not None else Path(cfg.dir or "data/builtin")
        train, test = ensure_builtin(cfg, folder)
        return train, test, _COURSE_KEYS, ""  # we wrote them: the config's keys don't apply
    if cfg.name == "catvnoncat":
        folder = Path(cfg.dir or "data/catvnoncat")
        hint = f"copy train_catvnoncat.h5 and test_catvnoncat.h5 into {folder}"
        return (folder / (cfg.train_file or "train_catvnoncat.h5"),
                folder / (cfg.test_file or "test_catvnoncat.h5"), keys, hint)
    if cfg.name == "h5":
        if not cfg.train_file:
            raise DataError("data.train_file is not set: data.name=h5 needs the training "
                            "HDF5 file (in data.dir)")
        folder = Path(cfg.dir or ".")
        test = folder / cfg.test_file if cfg.test_file else None
        return folder / cfg.train_file, test, keys, ""
    raise DataError(f"data.name={cfg.name!r}: unknown dataset; expected one of "
                    f"{', '.join([*GENERATORS, 'catvnoncat', 'h5'])}")


def _no_validation(fraction: float, path: Path, y: np.ndarray) -> DataError:
    """The error for a split that leaves no validation example: every class has a single
    example, and `stratified_split` never takes a class's last one from training."""
    m = y.size
    return DataError(f"data.val_fraction={fraction}: {path} has {m} example"
                     f"{'s' if m != 1 else ''} ({m} class{'es' if m != 1 else ''} of 1), which "
                     "leaves no validation example, since each class keeps one for training; "
                     "set data.val_fraction=0, or use a file with at least 2 examples of a "
                     "class")


def _scale(cfg: DataConfig, stored: np.dtype) -> float:
    if cfg.scale is not None:
        return float(cfg.scale)
    if stored == np.uint8:
        return 255.0
    return builtin_defaults(cfg.name)["scale"] if cfg.name in GENERATORS else 1.0


def _to_columns(rows: np.ndarray, scale: float, dtype: np.dtype) -> np.ndarray:
    """X_rows (m, ...) -> X (n_x, m) C-contiguous `dtype`, divided by `scale`, in one pass.

    Flattening is the course's `X_rows.reshape(m, -1).T`. The division runs in the
    smaller of the stored and target precisions (float32 for uint8 -> float32), so no
    float64 temporary of the whole array is made.
    """
    m = rows.shape[0]
    cols = rows.reshape(m, -1).T
    X = np.empty(cols.shape, dtype=dtype)
    np.divide(cols, scale, out=X, dtype=np.result_type(cols.dtype, dtype))
    return X


def _standardize(X: dict[str, np.ndarray]) -> None:
    """In place: every split minus the training split's per-feature mean, over its std."""
    train = X["train"]
    mean = train.mean(axis=1, keepdims=True, dtype=np.float64)
    std = train.std(axis=1, keepdims=True, dtype=np.float64)
    # Decide constancy exactly (a computed std can be 1e-17 instead of 0).
    const = (train.max(axis=1) == train.min(axis=1))[:, None]
    mean = np.where(const, train[:, :1], mean)
    std = np.where(const, 1.0, std)
    for a in X.values():
        a -= mean.astype(a.dtype)
        a /= std.astype(a.dtype)


def _targets(y: np.ndarray, n_classes: int, one_hot: bool, dtype: np.dtype) -> np.ndarray:
    """y (m,) -> Y (n_classes, m) one-hot, or (1, m) 0/1."""
    if not one_hot:
        return y.astype(dtype).reshape(1, -1)
    Y = np.zeros((n_classes, y.size), dtype=dtype)
    Y[y, np.arange(y.size)] = 1
    return Y
