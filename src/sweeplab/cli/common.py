"""Shared command-line plumbing: the Hydra entry points and what they print."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mlflow.exceptions import MlflowException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from sweeplab.cli.compose_check import check_composes
from sweeplab.config import ConfigError, register_configs
from sweeplab.data import DataError
from sweeplab.names import ExitCode, Tag
from sweeplab.nn import ShapeError
from sweeplab.tracking.errors import no_space
from sweeplab.tracking.links import command, ui_hint
from sweeplab.tracking.quick_exit import skip_final_collection
from sweeplab.tracking.store import (
    TrackingServerError,
    TrackingStoreError,
    check_server,
    default_uri,
)
from sweeplab.train import interrupt
from sweeplab.train.interrupt import (
    exit_code,
    interruption,
    request_stop,
    sigterm_as_interrupt,
)

if TYPE_CHECKING:
    from sweeplab.tracking import MlflowTracker
    from sweeplab.train import RunResult

# The configs ship inside the package (src/sweeplab/conf/, package data), so an installed
# sweeplab finds them from any working directory.
CONF_MODULE = "sweeplab.conf"
CONF_PATH = f"pkg://{CONF_MODULE}"


def hydra_app(config_name: str, job: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """A Hydra app over the packaged configs (sweeplab/conf/) that turns sweeplab's input
    errors, a tracking server that does not answer (before or during the run), and a full
    disk into one clear message and exit code 2, Ctrl-C into exit code 130 and SIGTERM into
    143, instead of a traceback."""
    import hydra

    register_configs()

    @hydra.main(version_base="1.3", config_path=CONF_PATH, config_name=config_name)
    def app(cfg: DictConfig) -> Any:
        try:
            return job(cfg)
        except (ConfigError, DataError, ShapeError, OmegaConfBaseException,
                TrackingServerError, TrackingStoreError) as err:
            # OmegaConf's errors (a wrong type) reach here for a config composed without
            # the schema, such as a logged config.yaml; their message names the key.
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(ExitCode.USAGE) from None
        except (OSError, MlflowException) as err:
            tracking = cfg.get("tracking") or {}
            line = environment_failure(err, tracking.get("uri") or default_uri())
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            raise SystemExit(ExitCode.USAGE) from None
        except MemoryError as err:  # NumPy's "Unable to allocate ..." names the size
            print(f"error: {out_of_memory(err)}", file=sys.stderr)
            raise SystemExit(ExitCode.USAGE) from None
        except KeyboardInterrupt as err:
            print(interruption(err), file=sys.stderr)
            raise SystemExit(exit_code(err)) from None

    def main() -> Any:
        skip_final_collection()
        draw_into_files()
        line_buffered_stdout()
        guard_output()
        sys.argv = absolute_config_path(sys.argv)
        # Hydra's own composition errors (an unknown key or option, a wrong type) end in
        # several lines and exit code 1 before the job runs: compose once first.
        check_composes(config_name, CONF_MODULE, sys.argv[1:])
        with sigterm_as_interrupt():
            return app()

    return main


def draw_into_files() -> None:
    """Matplotlib's Agg backend for this process and those it starts (the writer, Dask's
    local workers), whatever $MPLBACKEND says: sweeplab's commands draw into files, never a
    window, and a backend matplotlib does not know made every plot fail at `import
    matplotlib`, with a traceback."""
    os.environ["MPLBACKEND"] = "Agg"


def line_buffered_stdout() -> None:
    """Flush stdout at each line even when it is a file or a pipe (a cluster job's log, `>
    sweep.log`, `| tee`): Python buffers it in blocks there, so a sweep's trial lines
    would show up only when it exits, or never if it is killed."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)  # absent on a notebook's stream
    if reconfigure is not None:
        reconfigure(line_buffering=True)


class _Guarded:
    """A standard stream whose reader may go away (`make sweep | head -1`): then what is
    written after is dropped instead of raising BrokenPipeError at every print (a traceback,
    and a sweep left with its parent run RUNNING), and a sweep stops at its next safe point
    as for Ctrl-C (`request_stop`), with its runs closed and its summary logged. Anything
    else is the stream's own."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except OSError as err:
                self._reader_gone(err)
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except OSError as err:
                self._reader_gone(err)

    def _reader_gone(self, err: OSError) -> None:
        # Any other failure to write (a full disk under `> sweep.log`) is handled the same
        # way: the sweep stops with its runs closed, and says why on stderr (if it can).
        if not isinstance(err, BrokenPipeError) and interrupt.output_failure is None:
            interrupt.output_failure = (f"its output could not be written "
                                        f"({err.strerror or type(err).__name__})")
        self._gone = True
        # What the stream still buffers goes nowhere, also at exit (as Python's signal
        # documentation advises for a closed pipe), rather than failing there again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        request_stop(signal.SIGPIPE)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_output() -> None:
    """Guard stdout and stderr (`_Guarded`), once."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _Guarded):
            setattr(sys, name, _Guarded(stream))


def out_of_memory(err: MemoryError) -> str:
    """One line for a run that asked for more memory than the machine has."""
    what = str(err).strip().splitlines()[0] if str(err).strip() else "MemoryError"
    return (f"not enough memory ({what}); make the network or the data smaller "
            f"(model.width, model.hidden, data.n_samples, train.batch_size)")


def environment_failure(err: BaseException, uri: str) -> str | None:
    """One line for what the environment did to a command whose tracking store is `uri`: a
    full disk (a write of the journal, the store or an output file), or a tracking server
    that stopped answering (MLflow's client gave up retrying, within about a minute:
    tracking/store.py); None for any other error, which is the caller's to raise."""
    full = no_space(err)
    if full is not None:
        return (f"no space left on the device ({full}); free space, then run the same "
                f"command to resume")
    if isinstance(err, MlflowException):
        try:
            check_server(uri)
        except TrackingServerError as gone:
            return f"the tracking server stopped answering: {gone}"
    return None


def absolute_config_path(argv: list[str]) -> list[str]:
    """argv with a relative ``--config-path``/``-cp`` made absolute against the working
    directory. Hydra reads a relative one against the package declaring the app
    (sweeplab/), but `--config-path downloaded --config-name config` on a logged
    config.yaml means the folder here."""
    out = list(argv)
    for i, arg in enumerate(out):
        for flag in ("--config-path", "-cp"):
            if arg == flag and i + 1 < len(out):
                out[i + 1] = _absolute(out[i + 1])
            elif arg.startswith(flag + "="):
                out[i] = f"{flag}={_absolute(arg.removeprefix(flag + '='))}"
    return out


def _absolute(path: str) -> str:
    # pkg:// and file:// paths are Hydra's own, and already unambiguous.
    return path if "://" in path else str(Path(path).absolute())


def hydra_run_tags() -> dict[str, str]:
    """Tags that say how Hydra made this run's config, so that runs can be told apart and
    filtered by them: the option chosen for each config group (``sweeplab.experiment``,
    ``sweeplab.data``, ``sweeplab.optim``, ...; a group left empty, such as experiment
    without a preset, is not tagged), and for a job of a multirun (``-m``) the multirun's
    output folder, the same for all its jobs, and the job's number. {} outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    tags = {Tag.CHOICE + group: str(choice) for group, choice in hc.runtime.choices.items()
            if choice is not None and not group.startswith("hydra/")}
    if hc.mode == RunMode.MULTIRUN:
        tags |= {Tag.MULTIRUN: str(hc.sweep.dir), Tag.MULTIRUN_JOB: str(hc.job.num)}
    return tags


def report_run(result: RunResult, tracker: MlflowTracker | None) -> None:
    """Print how the run ended, its final metrics, and where to look next."""
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()
                        if k.endswith("accuracy"))
    print(f"\n{result.run_name}: {result.status} after {result.epochs_run} epochs "
          f"in {result.metrics.get('train_seconds', 0):.1f}s"
          + (f" ({result.reason})" if result.reason else ""))
    if metrics:
        print(f"  {metrics}")
    if tracker is not None and tracker.run_id is not None:
        print(f"  logged to MLflow run {tracker.run_id}")
        print(f"  rerun:  {command('rerun', tracker.run_id, tracker.uri)}")
        print(f"  look:   {ui_hint(tracker.uri, tracker.experiment_id, tracker.run_id)}")


# `[+|++|~]sweep.params.<key>=<expression>` on the command line, the expression unquoted.
_SPACE_ARG = re.compile(r"^(\+{0,2}|~)(sweep\.params\.[^=]+)=([^'\"].*\(.*)$")


def quote_space_overrides(argv: list[str]) -> list[str]:
    """argv with each unquoted search-space expression quoted for Hydra.

    Unquoted, Hydra reads `sweep.params.model.depth=range(1, 6)` as a sweep of its own and
    refuses it without --multirun; the shell, and `make`'s recipe, strip the quotes users
    write around it, so the quoting is done here. Quoted ones are left as they are.
    """
    out = []
    for arg in argv:
        m = _SPACE_ARG.match(arg)
        if m and "'" not in m[3]:
            arg = f"{m[1]}{m[2]}='{m[3]}'"
        elif m and '"' not in m[3]:
            arg = f'{m[1]}{m[2]}="{m[3]}"'
        out.append(arg)
    return out
