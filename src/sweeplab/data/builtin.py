"""Built-in datasets, generated offline and cached as course-layout HDF5 files.

Each built-in is written once to `<cache_dir>/train_<stem>.h5` and `test_<stem>.h5`,
where the stem encodes every generator parameter (`planar_n400_noise0.2_seed1`), so the
built-ins go through the same reader and checks as the course's files, and two configs
never share a file unless they would generate the same data.

- planar: the course's 2-D "flower" (`load_planar_dataset`), 2 classes ["red", "blue"].
- moons, circles: scikit-learn's `make_moons` / `make_circles` (factor 0.5).
- digits: scikit-learn's bundled 8x8 digits, pixels 0..16 as float64; all 10 classes, or
  `digit` d vs the rest as ["not d", "d"].
- breast_cancer: scikit-learn's bundled Wisconsin data, classes from its target names.

The test part is a stratified hold-out (25% for the generated sets, 20% for digits and
breast_cancer) drawn with `np.random.default_rng(generator_seed)`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeplab.data.errors import DataError
from sweeplab.data.h5 import write_course_h5
from sweeplab.data.split import stratified_split

if TYPE_CHECKING:
    from sweeplab.config import DataConfig

# (X_rows (m, n_x), y (m,) int64, class names)
Generated = tuple[np.ndarray, np.ndarray, list[str]]


def make_planar(n_samples: int, noise: float, rng: np.random.RandomState) -> Generated:
    """The course's `load_planar_dataset` with m, the noise and the RNG as parameters.

    N = m // 2 points per class; for class j, t = linspace(3.12 j, 3.12 (j+1), N) + noise
    * randn(N), r = 4 sin(4t) + noise * randn(N), x = (r sin t, r cos t). With m=400,
    noise=0.2 and RandomState(1) the draws, and so the points, are the course's.
    Returns X_rows (2N, 2), y (2N,).
    """
    N, a = n_samples // 2, 4
    X = np.zeros((2 * N, 2))
    y = np.zeros(2 * N, dtype=np.int64)
    for j in range(2):
        ix = slice(N * j, N * (j + 1))
        t = np.linspace(j * 3.12, (j + 1) * 3.12, N) + rng.randn(N) * noise
        r = a * np.sin(4 * t) + rng.randn(N) * noise
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    return X, y, ["red", "blue"]


def _planar(cfg: DataConfig) -> Generated:
    # A local RandomState: the course's draws without touching the global RNG.
    return make_planar(cfg.n_samples, cfg.noise, np.random.RandomState(cfg.generator_seed))


def _moons(cfg: DataConfig) -> Generated:
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=cfg.n_samples, noise=cfg.noise, random_state=cfg.generator_seed)
    return X, y.astype(np.int64), ["upper", "lower"]


def _circles(cfg: DataConfig) -> Generated:
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=cfg.n_samples, noise=cfg.noise, factor=0.5,
                        random_state=cfg.generator_seed)
    return X, y.astype(np.int64), ["outer", "inner"]


def _digits(cfg: DataConfig) -> Generated:
    X, target = load_digits_rows()
    if cfg.digit is None:
        return X, target, [str(c) for c in range(10)]
    return X, (target == cfg.digit).astype(np.int64), [f"not {cfg.digit}", str(cfg.digit)]


def load_digits_rows() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as `load_digits(return_X_y=True)` gives them: X_rows
    (1797, 64) float64 and y (1797,) int64. Read from its file directly when it is where
    scikit-learn 1.x keeps it: importing scikit-learn takes a second, reading the file
    30 ms, and a sweep in a new folder waits for it before its first trial."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            import gzip

            with gzip.open(path, "rt", encoding="utf-8") as rows:
                data = np.loadtxt(rows, delimiter=",")
            return data[:, :-1], data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float64), y.astype(np.int64)


def _breast_cancer(cfg: DataConfig) -> Generated:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return d.data.astype(np.float64), d.target.astype(np.int64), [str(n) for n in d.target_names]


# name -> (generator, test fraction)
GENERATORS: dict[str, tuple[Callable[[DataConfig], Generated], float]] = {
    "planar": (_planar, 0.25),
    "moons": (_moons, 0.25),
    "circles": (_circles, 0.25),
    "digits": (_digits, 0.2),
    "breast_cancer": (_breast_cancer, 0.2),
}


def builtin_defaults(name: str) -> dict[str, Any]:
    """What a built-in implies when the config leaves it open: `scale` used when
    data.scale is null (digits: 16, the pixel maximum), and `standardize` forced on
    (breast_cancer: its 30 features range from 0 to about 4000)."""
    return {"scale": 16.0 if name == "digits" else 1.0, "standardize": name == "breast_cancer"}


def builtin_stem(cfg: DataConfig) -> str:
    """File stem naming the built-in and every parameter its data depends on."""
    seed = f"seed{cfg.generator_seed}"
    if cfg.name in ("planar", "moons", "circles"):
        return f"{cfg.name}_n{cfg.n_samples}_noise{float(cfg.noise)!r}_{seed}"
    if cfg.name == "digits":
        return f"digits_{'all' if cfg.digit is None else f'd{cfg.digit}'}_{seed}"
    if cfg.name == "breast_cancer":
        return f"breast_cancer_{seed}"
    raise ValueError(f"data.name={cfg.name!r}: not a built-in; expected one of "
                     f"{', '.join(GENERATORS)}")


def ensure_builtin(cfg: DataConfig, cache_dir: Path) -> tuple[Path, Path]:
    """Return (train path, test path) of the built-in `cfg.name` in `cache_dir`,
    generating and writing both files only if one is missing."""
    stem = builtin_stem(cfg)
    train, test = Path(cache_dir) / f"train_{stem}.h5", Path(cache_dir) / f"test_{stem}.h5"
    try:
        if train.is_file() and test.is_file():
            return train, test
    except PermissionError:  # the folder may not be searched by us (no x bit)
        raise DataError(f"data.dir={str(cache_dir)!r}: permission denied reading the "
                        f"{cfg.name} cache there; give a folder you can read and write, or "
                        f"leave data.dir null (./data/builtin)") from None
    generate, test_fraction = GENERATORS[cfg.name]
    X, y, classes = generate(cfg)
    tr, te = stratified_split(y, test_fraction, np.random.default_rng(cfg.generator_seed))
    try:
        # Test first: a reader that finds the train file can then count on the test file.
        write_course_h5(test, X[te], y[te], classes, "test")
        write_course_h5(train, X[tr], y[tr], classes, "train")
    except (FileExistsError, NotADirectoryError):
        raise DataError(f"data.dir={str(cache_dir)!r}: built-in datasets are cached in a "
                        f"folder, and this is a file: give a folder, or leave data.dir "
                        f"null (./data/builtin)") from None
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise  # a full disk, say: the command's own handling says so
        raise DataError(f"data.dir={str(cache_dir)!r}: cannot write the {cfg.name} cache "
                        f"there ({err.strerror}): set data.dir to a folder you can write "
                        f"to, or run from one (data.dir null caches in ./data/builtin)"
                        ) from None
    return train, test
