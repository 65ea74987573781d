"""The package's shape: imports only point down its layers, and the NumPy core stays pure.

    conf (YAML only), names <- pids <- nn <- config <- data <- train <- tracking <- sweep
    <- cli, bench, __main__

A module may import its own layer and those below it, never one above (type-only imports
included: they are a dependency all the same). Checked on the source, so a lazy import
inside a function counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sweeplab"
LAYERS = ["conf", "names", "pids", "nn", "config", "data", "train", "tracking", "sweep", "cli"]
ENTRY = len(LAYERS) - 1
# Third-party packages a layer may not import at all.
FORBIDDEN = {"nn": {"mlflow", "optuna", "hydra", "omegaconf"},
             "data": {"mlflow", "optuna", "hydra"},
             "train": {"mlflow", "optuna", "hydra"},
             "tracking": {"optuna", "hydra"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """The layer of a sweeplab module; entry points (cli, bench, __main__) are the top."""
    parts = module.split(".")
    if len(parts) == 1 or parts[-1] == "__main__" or parts[1] == "bench":
        return ENTRY if len(parts) > 1 else 0
    return LAYERS.index(parts[1])


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in the file, nested ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from sweeplab import nn` imports the submodule sweeplab.nn
            if node.module == "sweeplab":
                out += [(node.lineno, f"sweeplab.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


SOURCES = sorted(SRC.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    for path in SOURCES:
        layer(module_name(path))  # raises ValueError for a folder outside LAYERS


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_imports_only_point_down(path: Path) -> None:
    me = module_name(path)
    up = [f"line {line}: {name} (layer {layer(name)} > {layer(me)})"
          for line, name in imports(path)
          if name.startswith("sweeplab.") and layer(name) > layer(me)]
    assert not up, f"{me} (layer {layer(me)}) imports from above:\n" + "\n".join(up)
    part = me.split(".")[1] if "." in me else ""
    banned = [f"line {line}: {name}" for line, name in imports(path)
              if name.split(".")[0] in FORBIDDEN.get(part, set())]
    assert not banned, f"{me} must not import " + ", ".join(banned)


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from sweeplab.cli.common import hydra_app\n")
    assert [name for _, name in imports(bad)] == ["sweeplab.cli.common"]
    assert layer("sweeplab.cli.common") > layer("sweeplab.train.loop")


def test_importing_train_loads_no_cli_mlflow_optuna_or_hydra() -> None:
    code = ("import sys, sweeplab.train; print(sorted({m.split('.')[0] if not "
            "m.startswith('sweeplab') else m for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = eval(out)  # a list literal printed by the child
    for name in ("mlflow", "optuna", "hydra", "sweeplab.cli", "sweeplab.tracking",
                 "sweeplab.sweep"):
        assert name not in loaded, f"import sweeplab.train loaded {name}"
    assert "sweeplab.train.loop" in loaded  # the check itself saw the import
