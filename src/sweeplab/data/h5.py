"""Read and write the course's HDF5 layout.

One file holds one split, as the deeplearning.ai course files do:

    {prefix}_set_x   (m, ...)       examples first, any numeric dtype
                                    (catvnoncat: uint8 (209, 64, 64, 3))
    {prefix}_set_y   (m,)           integer labels 0..n_classes-1 ((1, m), (m, 1) accepted)
    list_classes     (n_classes,)   class names as bytes (optional when reading)

Every problem with a file raises `DataError` naming the path, the key, what was found
and what was expected.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from sweeplab.data.errors import DataError


def read_split(
    path: str | Path,
    x_key: str,
    y_key: str,
    classes_key: str = "list_classes",
    *,
    classes: Sequence[str] | None = None,
    missing_hint: str = "",
    damaged_hint: str = "copy it again from its source",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read one split and check it.

    Returns `(X_rows, y, classes)`: X_rows (m, ...) in the stored dtype (a 1-D X is read
    as (m, 1)), y (m,) int64, and the class names. When the file has no `classes_key`,
    the names are `classes` if given (the training file's, when reading a test file),
    else "0".."max label". When both are present they must agree.
    `missing_hint` is appended to the file-not-found message (where to get the file),
    `damaged_hint` to the message for a file that is truncated or corrupt (how to replace it).
    A file or folder we may not read, a damaged file and a file that is not HDF5 at all
    each raise `DataError` with one line naming the file.
    """
    path = Path(path)
    expected = f"datasets '{x_key}' (m, ...) and '{y_key}' (m,), optionally '{classes_key}'"
    try:
        found = path.is_file()
    except PermissionError:  # a folder on the way that we may not search (no x bit)
        raise DataError(f"{path}: permission denied on its folder {path.parent}; get read "
                        "access to that folder, or copy the files to one you can read") from None
    if not found:
        hint = f"; {missing_hint}" if missing_hint else ""
        # which part of the path is not what it should be: "file not found" misled for a
        # data.dir that is a file, or a data file that is a folder
        what = ("is a folder, not a file" if path.is_dir() else
                f"cannot be there: {path.parent} is a file, not a folder"
                if path.parent.is_file() else "file not found")
        raise DataError(f"{path}: {what}; expected an HDF5 file with {expected}{hint}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise _unopenable(path, e, expected, damaged_hint) from None
    try:
        with f:
            X = _read(f, path, x_key)
            y_raw = _read(f, path, y_key)
            stored = _class_names(f[classes_key][()], path, classes_key) if (
                classes_key in f) else None
    # A file that opens but whose inner structure is broken: h5py raises RuntimeError
    # ("bad local heap signature"), KeyError ("bad object header version") or OSError.
    except (OSError, RuntimeError, KeyError) as e:
        raise DataError(f"{path}: the HDF5 file is damaged ({_h5_reason(e)}); "
                        f"{damaged_hint}") from None

    X = _check_x(X, path, x_key)
    y = _check_y(y_raw, path, y_key)
    if len(y) != X.shape[0]:
        raise DataError(f"{path}: '{x_key}' has {X.shape[0]} examples (shape {X.shape}) but "
                        f"'{y_key}' has {len(y)} labels; expected one label per example")
    if stored is not None and classes is not None and stored != list(classes):
        raise DataError(f"{path}: '{classes_key}' is {stored}, expected the training file's "
                        f"classes {list(classes)}")
    names = stored if stored is not None else (list(classes) if classes is not None else None)
    if names is None:
        if y.min() < 0:
            raise DataError(f"{path}: '{y_key}' has negative labels (min {y.min()}) and there is "
                            f"no '{classes_key}'; expected labels 0..n_classes-1")
        names = [str(c) for c in range(int(y.max()) + 1)]
    bad = np.unique(y[(y < 0) | (y >= len(names))])
    if bad.size:
        raise DataError(f"{path}: '{y_key}' has labels {bad[:10].tolist()} outside the classes; "
                        f"expected 0..{len(names) - 1} for the classes {names}")
    return X, y, names


def _unopenable(path: Path, err: OSError, expected: str, damaged_hint: str) -> DataError:
    """The DataError for a file h5py cannot open: not ours to read, not HDF5, or damaged."""
    if err.errno == errno.EACCES or isinstance(err, PermissionError):
        return DataError(f"{path}: permission denied reading the file; make it readable to "
                         "you (chmod/chown), or copy it somewhere you can read")
    reason = _h5_reason(err)
    if "file signature not found" in reason:  # HDF5's own words for "no HDF5 header"
        return DataError(f"{path}: not an HDF5 file (no HDF5 signature); expected an HDF5 "
                         f"file with {expected}")
    return DataError(f"{path}: the HDF5 file is damaged ({reason}); {damaged_hint}")


def _h5_reason(err: BaseException) -> str:
    """h5py's message on one line, without its "Unable to synchronously ..." preamble
    (h5py 3.x) and the repr quotes a KeyError adds."""
    text = str(err.args[0]) if err.args else str(err)
    text = " ".join(text.split())
    return text.split("(", 1)[1].rsplit(")", 1)[0] if "(" in text else text


def _read(f: h5py.File, path: Path, key: str) -> np.ndarray:
    if key not in f:
        raise DataError(f"{path}: no dataset '{key}'; keys present: {sorted(f.keys())}")
    if not isinstance(f[key], h5py.Dataset):
        raise DataError(f"{path}: '{key}' is an HDF5 {type(f[key]).__name__.lower()}, not "
                        f"a dataset; expected '{key}' to be an array")
    return np.asarray(f[key][()])


def _class_names(raw: np.ndarray, path: Path, key: str) -> list[str]:
    raw = np.asarray(raw)
    if raw.ndim != 1:
        raise DataError(f"{path}: '{key}' has shape {raw.shape}, expected (n_classes,) names")
    return [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in raw.tolist()]


def _check_x(X: np.ndarray, path: Path, key: str) -> np.ndarray:
    if X.ndim == 0 or X.shape[0] == 0:
        raise DataError(f"{path}: '{key}' has shape {X.shape}, expected (m, ...) with m >= 1")
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: '{key}' has dtype {X.dtype}, expected numbers")
    if X.ndim == 1:
        X = X.reshape(-1, 1)  # one feature per example
    if X.dtype.kind == "f":
        finite = np.isfinite(X)
        if not finite.all():
            first = np.argwhere(~finite)[0].tolist()
            raise DataError(f"{path}: '{key}' has {int((~finite).sum())} non-finite values "
                            f"(first at index {first}); expected finite numbers")
    return X


def _check_y(y: np.ndarray, path: Path, key: str) -> np.ndarray:
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()  # (1, m) or (m, 1): the course's Y orientation, same labels
    if y.ndim != 1:
        raise DataError(f"{path}: '{key}' has shape {y.shape}, expected (m,) "
                        "(or (1, m) / (m, 1))")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise DataError(f"{path}: '{key}' has non-integer labels (dtype {y.dtype}), "
                        "expected integers 0..n_classes-1")
    if y.dtype.kind not in "biuf":
        raise DataError(f"{path}: '{key}' has dtype {y.dtype}, expected integer labels")
    return y.astype(np.int64)


def write_course_h5(
    path: str | Path,
    X_rows: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    prefix: str,
) -> Path:
    """Write X_rows (m, ...), y (m,) and the class names as `{prefix}_set_x`,
    `{prefix}_set_y` and `list_classes` (bytes), the course layout.

    The file appears whole or not at all: it is written to a temporary file in the same
    folder and moved into place, because several sweep workers may build the same
    cached file at once.
    """
    path = Path(path)
    X_rows, y = np.asarray(X_rows), np.asarray(y)
    if y.ndim != 1 or len(y) != len(X_rows):
        raise DataError(f"{path}: cannot write X of shape {X_rows.shape} with y of shape "
                        f"{y.shape}; expected y (m,) with m = {len(X_rows)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(f"{prefix}_set_x", data=X_rows)
            f.create_dataset(f"{prefix}_set_y", data=y.astype(np.int64))
            f.create_dataset("list_classes", data=np.array([c.encode() for c in classes],
                                                           dtype="S"))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache should be readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
