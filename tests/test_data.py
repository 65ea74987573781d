"""Tests of sweeplab.data: the HDF5 layout, the built-ins, splitting and the loader."""

from __future__ import annotations

import os
import re
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from sweeplab.config import BUILTIN_DATASETS, DataConfig
from sweeplab.data import DataError, Dataset, load_dataset
from sweeplab.data.builtin import GENERATORS, ensure_builtin
from sweeplab.data.h5 import read_split, write_course_h5
from sweeplab.data.split import fingerprint, stratified_split

KEYS = ("train_set_x", "train_set_y", "list_classes")


def write_raw(path: Path, **datasets: np.ndarray) -> Path:
    """Write arbitrary datasets, to build files the writer would refuse to make."""
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
    return path


def two_class_file(path: Path, m: int = 20, n_x: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n_x))
    y = np.arange(m) % 2
    return write_course_h5(path, X, y, ["a", "b"], "train")


def cat_files(shared: Path) -> Path:
    folder = shared / "catvnoncat"
    if not (folder / "train_catvnoncat.h5").is_file():
        pytest.skip(f"course data not found at {folder}")
    return folder


# --- HDF5 layout -------------------------------------------------------------------------


def test_round_trip_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(7, 4, 4, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 1, 0, 2, 2])
    path = write_course_h5(tmp_path / "train_x.h5", X, y, ["cat", "dog", "bird"], "train")
    X2, y2, classes = read_split(path, *KEYS)
    assert X2.dtype == np.uint8
    np.testing.assert_array_equal(X2, X)
    assert y2.dtype == np.int64
    np.testing.assert_array_equal(y2, y)
    assert classes == ["cat", "dog", "bird"]
    with h5py.File(path) as f:  # the course stores names as bytes
        assert f["list_classes"].dtype.kind == "S"


def test_write_is_atomic_and_overwrites(tmp_path: Path) -> None:
    path = two_class_file(tmp_path / "d.h5", m=10)
    path = two_class_file(tmp_path / "d.h5", m=12)
    assert os.listdir(tmp_path) == ["d.h5"]  # no temporary file left behind
    assert read_split(path, *KEYS)[0].shape == (12, 3)


def test_missing_file_names_path_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "nope.h5"
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nope.h5"))) as e:
        read_split(path, *KEYS)
    assert "train_set_x" in str(e.value) and "train_set_y" in str(e.value)


def test_a_path_of_the_wrong_kind_says_which_part_is_wrong(tmp_path: Path) -> None:
    """Each said "file not found": a data folder that is a file, a data file that is a
    folder, a key that is a group and not a dataset ("no dataset 'x'; keys present: ['x']")."""
    import h5py

    (tmp_path / "afile").write_text("not a folder\n")
    with pytest.raises(DataError, match=r"afile/d.h5: cannot be there: .*afile is a file, "
                                        r"not a folder"):
        read_split(tmp_path / "afile" / "d.h5", *KEYS)
    (tmp_path / "folder.h5").mkdir()
    with pytest.raises(DataError, match=r"folder.h5: is a folder, not a file"):
        read_split(tmp_path / "folder.h5", *KEYS)
    grouped = tmp_path / "g.h5"
    with h5py.File(grouped, "w") as f:
        f.create_group("train_set_x")
        f["train_set_y"] = np.zeros(3)
    with pytest.raises(DataError, match=r"g.h5: 'train_set_x' is an HDF5 group, not a "
                                        r"dataset"):
        read_split(grouped, *KEYS)


def test_garbage_file_is_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "garbage.h5"
    path.write_bytes(b"this is not an HDF5 file\n" * 100)
    with pytest.raises(DataError, match=r"garbage\.h5: not an HDF5 file"):
        read_split(path, *KEYS)


def test_truncated_file_is_a_data_error(tmp_path: Path) -> None:
    path = two_class_file(tmp_path / "t.h5", m=200)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_split(path, *KEYS)


def test_missing_key_lists_keys_present(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "k.h5", features=np.zeros((3, 2)), train_set_y=np.zeros(3))
    with pytest.raises(DataError, match=re.escape(str(path))) as e:
        read_split(path, *KEYS)
    msg = str(e.value)
    assert "'train_set_x'" in msg and "features" in msg


def test_length_mismatch(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "len.h5", train_set_x=np.zeros((5, 2)),
                     train_set_y=np.zeros(4, dtype=np.int64))
    with pytest.raises(DataError, match=r"len.h5.*5 examples.*4 labels"):
        read_split(path, *KEYS)


def test_label_out_of_range(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "lab.h5", train_set_x=np.zeros((3, 2)),
                     train_set_y=np.array([0, 1, 2]), list_classes=np.array([b"a", b"b"]))
    with pytest.raises(DataError, match=r"lab.h5.*'train_set_y'.*\[2\]"):
        read_split(path, *KEYS)


def test_nan_in_x(tmp_path: Path) -> None:
    X = np.zeros((4, 2))
    X[2, 1] = np.nan
    path = write_raw(tmp_path / "nan.h5", train_set_x=X, train_set_y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"nan.h5.*'train_set_x'.*non-finite"):
        read_split(path, *KEYS)


@pytest.mark.parametrize("shape", [(1, 4), (4, 1)])
def test_y_as_row_or_column_is_accepted(tmp_path: Path, shape: tuple[int, int]) -> None:
    labels = np.array([0, 1, 1, 0])
    path = write_raw(tmp_path / "y.h5", train_set_x=np.zeros((4, 2)),
                     train_set_y=labels.reshape(shape))
    np.testing.assert_array_equal(read_split(path, *KEYS)[1], labels)


def test_y_of_other_shape_is_refused(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "y2.h5", train_set_x=np.zeros((4, 2)),
                     train_set_y=np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(DataError, match=r"y2.h5.*'train_set_y'.*\(2, 4\)"):
        read_split(path, *KEYS)


def test_missing_classes_are_derived(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "g.h5", train_set_x=np.zeros((4, 2)),
                     train_set_y=np.array([2, 0, 1, 2]))
    assert read_split(path, *KEYS)[2] == ["0", "1", "2"]


def test_test_file_classes_must_match_train(tmp_path: Path) -> None:
    write_course_h5(tmp_path / "tr.h5", np.zeros((4, 2)), np.array([0, 1, 0, 1]),
                    ["a", "b"], "train")
    write_course_h5(tmp_path / "te.h5", np.zeros((2, 2)), np.array([0, 1]), ["b", "a"], "test")
    cfg = DataConfig(name="h5", dir=str(tmp_path), train_file="tr.h5", test_file="te.h5")
    with pytest.raises(DataError, match=r"te.h5.*list_classes"):
        load_dataset(cfg, seed=0)


def test_loader_errors_name_the_file(tmp_path: Path) -> None:
    cfg = DataConfig(name="h5", dir=str(tmp_path), train_file="missing.h5")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "missing.h5"))):
        load_dataset(cfg, seed=0)
    with pytest.raises(DataError, match=re.escape("data.train_file")):
        load_dataset(DataConfig(name="h5", dir=str(tmp_path)), seed=0)


# --- course data -------------------------------------------------------------------------


def test_catvnoncat_matches_course(shared_datasets: Path) -> None:
    folder = cat_files(shared_datasets)
    ds = load_dataset(DataConfig(name="catvnoncat", dir=str(folder)), seed=1)
    with h5py.File(folder / "train_catvnoncat.h5") as f:
        train_set_x_orig = f["train_set_x"][:]
        train_set_y = f["train_set_y"][:]
    # The course's own preprocessing, as the gold reference.
    course_X = train_set_x_orig.reshape(train_set_x_orig.shape[0], -1).T / 255.
    assert ds.X_train.shape == (12288, 209)
    assert ds.Y_train.shape == (1, 209)
    assert ds.X_test.shape == (12288, 50)
    assert ds.classes == ("non-cat", "cat")
    np.testing.assert_array_equal(ds.X_train, course_X)
    np.testing.assert_array_equal(ds.Y_train, train_set_y.reshape(1, -1))
    assert ds.X_train.min() >= 0.0 and ds.X_train.max() <= 1.0
    assert ds.X_train.flags.c_contiguous


def test_catvnoncat_float32_without_float64_copies(shared_datasets: Path) -> None:
    folder = cat_files(shared_datasets)
    cfg = DataConfig(name="catvnoncat", dir=str(folder))
    load_dataset(cfg, seed=1, dtype="float32")  # warm imports so only the load is traced
    tracemalloc.start()
    try:
        ds = load_dataset(cfg, seed=1, dtype="float32")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for a in (ds.X_train, ds.Y_train, ds.X_test, ds.Y_test):
        assert a.dtype == np.float32
    with h5py.File(folder / "train_catvnoncat.h5") as f:
        course_X = f["train_set_x"][:].reshape(209, -1).T / 255.
    np.testing.assert_allclose(ds.X_train, course_X, rtol=1e-7, atol=0)
    # The uint8 files plus the float32 results, with room to spare; one float64
    # temporary of the training images alone would add 20 MB.
    uint8_bytes = (209 + 50) * 12288
    assert peak < ds.X_train.nbytes + ds.X_test.nbytes + uint8_bytes + 3_000_000


def test_catvnoncat_missing_says_where_to_copy(tmp_path: Path) -> None:
    folder = tmp_path / "cats"
    with pytest.raises(DataError, match=re.escape(
            f"copy train_catvnoncat.h5 and test_catvnoncat.h5 into {folder}")):
        load_dataset(DataConfig(name="catvnoncat", dir=str(folder)), seed=1)


def test_football_through_generic_layout(shared_datasets: Path) -> None:
    folder = shared_datasets / "football"
    if not (folder / "train_football.h5").is_file():
        pytest.skip(f"course data not found at {folder}")
    cfg = DataConfig(name="h5", dir=str(folder), train_file="train_football.h5",
                     test_file="test_football.h5")
    ds = load_dataset(cfg, seed=0)
    with h5py.File(folder / "train_football.h5") as f:
        raw = f["train_set_x"][:]
    assert (ds.X_train.shape, ds.X_test.shape) == ((2, 211), (2, 200))
    np.testing.assert_array_equal(ds.X_train, raw.T)  # already scaled: divided by 1
    assert ds.classes == ("other team", "France")


# --- built-ins ---------------------------------------------------------------------------


def test_builtin_names_match_config() -> None:
    assert set(GENERATORS) == set(BUILTIN_DATASETS)


@pytest.mark.parametrize(
    ("name", "n_x", "m", "test_fraction", "classes"),
    [
        ("planar", 2, 400, 0.25, ("red", "blue")),
        ("moons", 2, 400, 0.25, ("upper", "lower")),
        ("circles", 2, 400, 0.25, ("outer", "inner")),
        ("digits", 64, 1797, 0.2, tuple(str(d) for d in range(10))),
        ("breast_cancer", 30, 569, 0.2, ("malignant", "benign")),
    ],
)
def test_builtin_generates_and_caches(
    tmp_path: Path, name: str, n_x: int, m: int, test_fraction: float, classes: tuple
) -> None:
    cfg = DataConfig(name=name, n_samples=400, noise=0.2, generator_seed=1)
    train, test = ensure_builtin(cfg, tmp_path)
    assert train.name.startswith("train_") and test.name.startswith("test_")
    stamps = (train.stat().st_mtime_ns, test.stat().st_mtime_ns)
    assert ensure_builtin(cfg, tmp_path) == (train, test)
    assert (train.stat().st_mtime_ns, test.stat().st_mtime_ns) == stamps  # not rewritten

    ds = load_dataset(cfg, seed=0, cache_dir=tmp_path)
    assert ds.classes == classes
    assert ds.n_x == n_x
    assert ds.m_train + ds.m_test == m
    assert abs(ds.m_test - test_fraction * m) <= len(classes)
    n_y = len(classes) if len(classes) > 2 else 1
    assert ds.Y_train.shape == (n_y, ds.m_train)
    assert set(os.listdir(tmp_path)) == {train.name, test.name}


def test_builtin_file_names_encode_parameters(tmp_path: Path) -> None:
    a = ensure_builtin(DataConfig(name="moons", n_samples=400, noise=0.2), tmp_path)[0]
    b = ensure_builtin(DataConfig(name="moons", n_samples=400, noise=0.3), tmp_path)[0]
    c = ensure_builtin(DataConfig(name="moons", n_samples=200, noise=0.2), tmp_path)[0]
    d = ensure_builtin(DataConfig(name="moons", generator_seed=2), tmp_path)[0]
    assert len({a, b, c, d}) == 4
    assert a.name == "train_moons_n400_noise0.2_seed1.h5"


def course_load_planar_dataset(rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """The course's `load_planar_dataset`, verbatim but for `np.random` -> `rng`."""
    m = 400
    N = int(m / 2)
    D = 2
    X = np.zeros((m, D))
    Y = np.zeros((m, 1), dtype="uint8")
    a = 4
    for j in range(2):
        ix = range(N * j, N * (j + 1))
        t = np.linspace(j * 3.12, (j + 1) * 3.12, N) + rng.randn(N) * 0.2
        r = a * np.sin(4 * t) + rng.randn(N) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        Y[ix] = j
    return X.T, Y.T


def test_planar_is_the_course_flower(tmp_path: Path) -> None:
    global_state = np.random.get_state()[1].copy()  # noqa: NPY002 - checking it is untouched
    train, test = ensure_builtin(DataConfig(name="planar", generator_seed=1), tmp_path)
    np.testing.assert_array_equal(np.random.get_state()[1], global_state)  # noqa: NPY002
    X, Y = course_load_planar_dataset(np.random.RandomState(1))
    Xtr, ytr, _ = read_split(train, *KEYS)
    Xte, yte, _ = read_split(test, "test_set_x", "test_set_y")
    ours = np.concatenate([np.c_[Xtr, ytr], np.c_[Xte, yte]])
    course = np.c_[X.T, Y.T]
    sort = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_array_equal(sort(ours), sort(course))


def test_moons_is_sklearn_make_moons(tmp_path: Path) -> None:
    from sklearn.datasets import make_moons

    train, test = ensure_builtin(DataConfig(name="moons", n_samples=100, noise=0.1,
                                            generator_seed=3), tmp_path)
    X, y = make_moons(n_samples=100, noise=0.1, random_state=3)
    Xtr, ytr, _ = read_split(train, *KEYS)
    Xte, yte, _ = read_split(test, "test_set_x", "test_set_y")
    ours = np.concatenate([np.c_[Xtr, ytr], np.c_[Xte, yte]])
    sort = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_array_equal(sort(ours), sort(np.c_[X, y]))


def test_digits_all_classes_one_hot(tmp_path: Path) -> None:
    ds = load_dataset(DataConfig(name="digits"), seed=0, cache_dir=tmp_path)
    assert ds.n_classes == 10
    assert ds.Y_train.shape == (10, ds.m_train)
    np.testing.assert_array_equal(ds.Y_train.sum(axis=0), 1.0)
    np.testing.assert_array_equal(ds.Y_train.argmax(axis=0), ds.y_train)
    assert ds.X_train.max() == 1.0 and ds.X_train.min() == 0.0  # divided by 16


def test_digits_read_from_the_bundled_file_are_scikit_learns_without_importing_it() -> None:
    """The digits file a sweep makes first is read straight from scikit-learn's bundled
    file (importing scikit-learn takes a second); it must be exactly what its loader gives."""
    import subprocess
    import sys

    probe = ("import sys; from sweeplab.data.builtin import load_digits_rows; "
             "X, y = load_digits_rows(); "
             "print('sklearn' in sys.modules, X.shape, X.dtype, y.dtype)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "(1797,", "64)", "float64", "int64"]

    from sklearn.datasets import load_digits

    from sweeplab.data.builtin import load_digits_rows

    X, y = load_digits_rows()
    X_sk, y_sk = load_digits(return_X_y=True)
    np.testing.assert_array_equal(X, X_sk)
    np.testing.assert_array_equal(y, y_sk)


def test_digit_vs_rest(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    ds = load_dataset(DataConfig(name="digits", digit=3), seed=0, cache_dir=tmp_path)
    assert ds.classes == ("not 3", "3")
    assert ds.Y_train.shape == (1, ds.m_train)
    assert ds.Y_test.shape == (1, ds.m_test)
    n_threes = int((load_digits().target == 3).sum())
    assert int(ds.Y_train.sum() + ds.Y_test.sum()) == n_threes
    assert load_dataset(DataConfig(name="digits", digit=3), seed=0, cache_dir=tmp_path,
                        one_hot=True).Y_train.shape == (2, ds.m_train)


def test_one_row_for_many_classes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="10 classes"):
        load_dataset(DataConfig(name="digits"), seed=0, cache_dir=tmp_path, one_hot=False)


def test_breast_cancer_is_standardised(tmp_path: Path) -> None:
    ds = load_dataset(DataConfig(name="breast_cancer"), seed=0, cache_dir=tmp_path)
    np.testing.assert_allclose(ds.X_train.mean(axis=1), 0.0, atol=1e-9)
    np.testing.assert_allclose(ds.X_train.std(axis=1), 1.0, atol=1e-9)


# --- splitting ---------------------------------------------------------------------------


def test_stratified_split_keeps_proportions() -> None:
    y = np.repeat([0, 1, 2], [60, 30, 10])
    tr, va = stratified_split(y, 0.2, np.random.default_rng(0))
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(y.size))
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)  # original order kept
    for c, n_c in enumerate([60, 30, 10]):
        assert abs((y[va] == c).sum() - 0.2 * n_c) <= 0.5


def test_stratified_split_is_deterministic_per_seed() -> None:
    y = np.arange(200) % 3
    a = stratified_split(y, 0.3, np.random.default_rng(5))
    b = stratified_split(y, 0.3, np.random.default_rng(5))
    c = stratified_split(y, 0.3, np.random.default_rng(6))
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_stratified_split_small_classes() -> None:
    y = np.array([0] * 20 + [1, 1] + [2])
    tr, va = stratified_split(y, 0.1, np.random.default_rng(0))
    assert (y[va] == 1).sum() == 1  # at least one of a class of two
    assert (y[va] == 2).sum() == 0 and (y[tr] == 2).sum() == 1  # a single example stays
    assert stratified_split(y, 0.0, np.random.default_rng(0))[1].size == 0


def test_val_split_from_train_only(tmp_path: Path) -> None:
    cfg = DataConfig(name="circles", n_samples=200)
    no_val = load_dataset(cfg, seed=0, cache_dir=tmp_path)
    assert no_val.X_val is None and no_val.Y_val is None and no_val.y_val is None
    assert no_val.m_val == 0
    cfg.val_fraction = 0.25
    a = load_dataset(cfg, seed=0, cache_dir=tmp_path)
    b = load_dataset(cfg, seed=0, cache_dir=tmp_path)
    c = load_dataset(cfg, seed=1, cache_dir=tmp_path)
    assert a.m_train + a.m_val == no_val.m_train
    assert a.X_val.shape == (2, a.m_val) and a.Y_val.shape == (1, a.m_val)
    np.testing.assert_array_equal(a.X_val, b.X_val)
    assert not np.array_equal(a.X_val, c.X_val)
    np.testing.assert_array_equal(a.X_test, no_val.X_test)  # test set untouched
    # every train and val column is a column of the full training set
    full = {tuple(col) for col in no_val.X_train.T}
    assert all(tuple(col) in full for col in np.c_[a.X_train, a.X_val].T)


# --- fingerprints ------------------------------------------------------------------------


def test_fingerprint_stable_and_sensitive() -> None:
    rng = np.random.default_rng(0)
    arrays = {"X_train": rng.normal(size=(3, 5)), "Y_train": np.ones((1, 5))}
    fp = fingerprint(arrays)
    assert fp == fingerprint({k: v.copy() for k, v in reversed(arrays.items())})
    changed = arrays["X_train"].copy()
    changed[1, 2] += 1e-12
    assert fingerprint({**arrays, "X_train": changed}) != fp
    assert fingerprint({**arrays, "X_train": arrays["X_train"].astype(np.float32)}) != fp
    assert fingerprint({**arrays, "X_train": arrays["X_train"].reshape(5, 3)}) != fp
    assert fingerprint({"X_val": arrays["X_train"], "Y_train": arrays["Y_train"]}) != fp


def test_dataset_fingerprint(tmp_path: Path) -> None:
    cfg = DataConfig(name="moons", n_samples=100)
    a = load_dataset(cfg, seed=0, cache_dir=tmp_path)
    assert load_dataset(cfg, seed=7, cache_dir=tmp_path).fingerprint == a.fingerprint
    assert load_dataset(cfg, seed=0, cache_dir=tmp_path, dtype="float32"
                        ).fingerprint != a.fingerprint
    cfg.val_fraction = 0.2  # now the seed picks the validation split
    assert (load_dataset(cfg, seed=0, cache_dir=tmp_path).fingerprint
            != load_dataset(cfg, seed=1, cache_dir=tmp_path).fingerprint)


def test_dataset_arrays_are_read_only(tmp_path: Path) -> None:
    ds = load_dataset(DataConfig(name="planar"), seed=0, cache_dir=tmp_path)
    assert isinstance(ds, Dataset)
    with pytest.raises(ValueError, match="read-only"):
        ds.X_train[0, 0] = 1.0


# --- scaling and standardisation ---------------------------------------------------------


def test_standardisation_uses_train_statistics_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Xtr = np.c_[rng.normal(5.0, 2.0, 80), rng.normal(-1.0, 0.5, 80), np.full(80, 3.0)]
    ytr = np.arange(80) % 2
    Xte = Xtr[:20] * 10 + 100  # a far-off test set must not move the statistics
    write_course_h5(tmp_path / "tr.h5", Xtr, ytr, ["a", "b"], "train")
    write_course_h5(tmp_path / "te.h5", Xte, ytr[:20], ["a", "b"], "test")
    cfg = DataConfig(name="h5", dir=str(tmp_path), train_file="tr.h5", test_file="te.h5",
                     standardize=True, val_fraction=0.25)
    ds = load_dataset(cfg, seed=3)
    keep, _ = stratified_split(ytr, 0.25, np.random.default_rng(3))
    mean, std = Xtr[keep].mean(axis=0), Xtr[keep].std(axis=0)
    std[2] = 1.0  # constant feature: std 0 -> 1
    np.testing.assert_allclose(ds.X_train.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.X_train.std(axis=1), [1.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(ds.X_test, ((Xte - mean) / std).T, rtol=1e-12, atol=1e-12)
    assert np.isfinite(ds.X_val).all()


def test_scale_override_and_uint8_default(tmp_path: Path) -> None:
    X = np.full((4, 2, 2), 200, dtype=np.uint8)
    write_course_h5(tmp_path / "img.h5", X, np.array([0, 1, 0, 1]), ["a", "b"], "train")
    cfg = DataConfig(name="h5", dir=str(tmp_path), train_file="img.h5")
    assert load_dataset(cfg, seed=0).X_train.max() == pytest.approx(200 / 255)
    cfg.scale = 100.0
    ds = load_dataset(cfg, seed=0, dtype="float32")
    assert ds.X_train.shape == (4, 4) and ds.X_train.dtype == np.float32
    assert ds.X_train.max() == np.float32(2.0)


def test_a_data_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    """Built-ins are cached in data.dir: a file there was a FileExistsError traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match=r"data\.dir='.*a-file': built-in datasets are "
                                        r"cached in a folder, and this is a file"):
        ensure_builtin(DataConfig(name="planar"), blocker)
