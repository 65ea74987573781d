"""Compose the command line's config once, before Hydra runs the app, so that an override
Hydra cannot compose (an unknown key or group option, a wrong type, a malformed override)
is one line naming it and what is allowed, and exit code 2, instead of Hydra's several
lines and exit code 1.

`@hydra.main` reports composition errors itself (hydra._internal.utils.run_and_report,
Hydra 1.3) before the job runs, so the app's own error handling never sees them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.errors import (
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from sweeplab.config import unknown_keys
from sweeplab.names import ExitCode

# Flags under which Hydra composes nothing: Hydra handles those on its own (`_flag_problem`
# checks what would end in its traceback). --help composes the overrides it is given; a
# --config-dir is put on the search path as Hydra puts it. Under --multirun (`a=1,2` is
# then a sweep, not an error) Hydra composes per job: its folder and jobs are checked.
_NOT_CHECKED = ("shell_completion", "experimental_rerun", "info")
OVERRIDE_GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def check_composes(config_name: str, conf_module: str, argv: Sequence[str]) -> None:
    """Compose `config_name` with argv's overrides as `@hydra.main` would; on failure print
    one line and exit with code 2. `argv` is sys.argv without the program name."""
    # Hydra's own parser, so flags are read as Hydra reads them (hydra._internal.utils,
    # Hydra 1.3; no public API parses Hydra's command line).
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(list(argv))
    # Hydra raises a ValueError (a traceback) for no subcommand; `query` is the shell's.
    subcommands = {o.split("=", 1)[0] for o in args.overrides}
    if args.shell_completion and not subcommands & {"install", "uninstall", "query"}:
        print("error: --shell-completion needs install=<shell> or uninstall=<shell> (bash, "
              "zsh or fish): `--shell-completion install=bash` prints what to eval",
              file=sys.stderr)
        raise SystemExit(ExitCode.USAGE)
    problem = _flag_problem(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE)
    if any(getattr(args, flag, None) for flag in _NOT_CHECKED) or "--version" in argv:
        return
    where = Where(args.config_path or f"pkg://{conf_module}", args.config_dir)
    if args.multirun:
        if not (args.cfg or args.resolve):
            _check_sweep_dir(args.config_name or config_name, where, args.overrides)
        return
    try:
        run_dir = _compose(args.config_name or config_name, where, args.overrides)
    except ChdirRefused:
        if args.cfg or args.resolve or args.help or args.hydra_help:  # printed, not run
            return
        print(f"error: {CHDIR_REFUSED}", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE) from None
    except (OverrideParseException, ConfigCompositionException,
            OmegaConfBaseException) as err:
        print(f"error: {describe(err)}", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE) from None
    except Exception as err:  # Hydra reports any of them as one message too
        # An override Hydra accepts but OmegaConf cannot apply (a key under a null node,
        # say sweep.params.x=1 without the sweep app) fails with a bare assertion.
        print(f"error: the overrides {' '.join(args.overrides)!r} do not compose "
              f"({type(err).__name__}: {_first_line(str(err))}); check each key exists in "
              f"`--cfg job` output", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE) from None
    if not (args.cfg or args.resolve or args.help or args.hydra_help):  # these run nothing
        _check_writable("hydra.run.dir", run_dir, "the run's")


def _flag_problem(args: Any) -> str | None:
    """Why Hydra's flags in `args` would end in its traceback, or None."""
    if args.shell_completion and any(o.startswith("query=") for o in args.overrides) \
            and "COMP_LINE" not in os.environ:
        return ("--shell-completion query=... is what the shell's completion runs (it reads "
                "$COMP_LINE); install it instead: eval \"$(<command> --shell-completion "
                "install=bash)\"")
    if args.multirun and (args.cfg or args.resolve):
        return "--cfg prints one job's config: drop -m (--multirun), one value per key"
    if args.multirun and args.run:
        return "--run (-r) and --multirun (-m) each choose how to run: give one"
    if args.multirun and (args.info or args.help or args.hydra_help):
        return "--help and --info show one config: drop -m (--multirun), one value per key"
    if args.resolve and not args.cfg:
        return "--resolve goes with --cfg (job, hydra or all): it resolves what --cfg prints"
    if args.info and args.shell_completion:
        return "--info and --shell-completion each do something else: give one"
    if args.experimental_rerun:
        return _rerun_file_problem(args.experimental_rerun)
    if args.config_dir and not Path(args.config_dir).is_dir():
        return (f"--config-dir {args.config_dir!r}: no such folder (it adds a folder of "
                f"config files to Hydra's search path)")
    return None


def _rerun_file_problem(name: str) -> str | None:
    """Why `name` is not a config Hydra saved (its .hydra/config.pickle), or None. Hydra
    unpickles it itself, with a traceback for anything else."""
    import pickle

    path = Path(name)
    give = "give a run's .hydra/config.pickle"
    if path.is_dir():
        return f"--experimental-rerun {name!r} is a folder; {give}"
    if path.exists() and not path.is_file():
        return f"--experimental-rerun {name!r} is not a regular file; {give}"
    if not path.is_file():
        return f"--experimental-rerun {name!r}: no such file; {give}"
    try:
        with path.open("rb") as f:
            saved = pickle.load(f)
    except Exception as err:  # whatever the bytes are, they are not Hydra's pickle
        saved = err
    hydra = saved.get("hydra") if isinstance(saved, DictConfig) else None
    # what a run saves: its config and Hydra's node, with what Hydra reads first
    if isinstance(hydra, DictConfig) and {"run", "job", "job_logging"} <= set(hydra):
        return None
    what = ("a config without Hydra's own node" if isinstance(saved, DictConfig) else
            type(saved).__name__ if isinstance(saved, Exception) else
            f"a {type(saved).__name__}")
    return f"--experimental-rerun {name!r}: not a config Hydra saved (it reads as {what}); {give}"


def _check_sweep_dir(config_name: str, where: Where, overrides: list[str]) -> None:
    """Exit with one line if the multirun's folder (hydra.sweep.dir) cannot be created, or
    if one of its jobs' configs does not compose or is invalid (`_check_jobs`)."""
    try:
        sweep_dir = _compose(config_name, where, overrides, multirun=True)
    except ChdirRefused:
        print(f"error: {CHDIR_REFUSED}", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE) from None
    except (OverrideParseException, ConfigCompositionException,
            OmegaConfBaseException) as err:  # an override of every job (sweeps not read)
        print(f"error: {describe(err)}", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE) from None
    except Exception:  # not composable: Hydra reports it, as it would have
        return
    _check_writable("hydra.sweep.dir", sweep_dir, "the multirun's")
    _check_jobs(config_name, where, overrides)


def _check_writable(key: str, folder: str, whose: str) -> None:
    """Exit with one line if Hydra cannot create its output folder `folder` (config `key`)."""
    problem = unwritable(folder)
    if problem is not None:
        print(f"error: {key}={folder!r}: Hydra cannot create {whose} output folder there "
              f"({problem}); run from a folder you can write, or set {key}=<a folder you "
              f"can write>", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE)


# Jobs of a multirun checked before the first runs (each compose takes ~0.1 s).
MAX_CHECKED_JOBS = 100


def _check_jobs(config_name: str, where: Where, overrides: list[str]) -> None:
    """Compose and validate each job of the multirun as Hydra's basic sweeper will launch
    it; exit with one line naming the first bad job. Before, `model.depth=1,-1` trained
    and logged job #0, then stopped at job #1."""
    from hydra import compose
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from sweeplab.config import ConfigError, check_used, to_config

    if any(o.lstrip("+~").startswith("hydra/sweeper") for o in overrides):
        return  # another sweeper launches its own jobs
    try:
        [jobs] = BasicSweeper.split_arguments(
            OverridesParser.create().parse_overrides(overrides), None)
    except Exception:  # a sweep the basic sweeper refuses: Hydra says so
        return
    with _initialized(where):
        for number, job in enumerate(jobs[:MAX_CHECKED_JOBS]):
            try:
                check_used(to_config(compose(config_name, overrides=job)))
            except (OverrideParseException, ConfigCompositionException,
                    OmegaConfBaseException, ConfigError) as err:
                why = str(err) if isinstance(err, ConfigError) else describe(err)
                print(f"error: multirun job #{number} ({' '.join(job)}): {why}; no job ran",
                      file=sys.stderr)
                raise SystemExit(ExitCode.USAGE) from None


def unwritable(folder: str) -> str | None:
    """Why `folder` (which may not exist yet) cannot be created and written by this
    process, or None: its nearest existing ancestor is not a folder, or it may not be
    written (a read-only file system, no permission)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    if not path.is_dir():
        return f"{path} is not a folder"
    if not os.access(path, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        return f"{path} is on a read-only file system" if read_only else \
            f"{path} may not be written by this user"
    return None


def _compose(config_name: str, where: Where, overrides: list[str],
             multirun: bool = False) -> str:
    """Compose as `@hydra.main` would; the run's output folder (hydra.run.dir), or with
    `multirun` the multirun's (hydra.sweep.dir), its sweep overrides left to the jobs."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    with _initialized(where):  # Hydra's global state restored after, for @hydra.main
        if multirun:  # as Hydra's own look at the mode composes (hydra._internal, 1.3)
            cfg = GlobalHydra.instance().hydra.compose_config(  # type: ignore[union-attr]
                config_name, overrides, run_mode=RunMode.MULTIRUN,
                with_log_configuration=False, validate_sweep_overrides=False)
        else:
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        if cfg.hydra.job.chdir:
            raise ChdirRefused
        return str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir)


@dataclass(frozen=True)
class Where:
    """Where Hydra looks for the configs: the app's config path (pkg:// or a folder) and
    the folder --config-dir adds (None without the flag)."""

    config_path: str
    config_dir: str | None = None


@contextlib.contextmanager
def _initialized(where: Where) -> Iterator[None]:
    """Hydra initialised on `where` for `compose`, with Hydra's global state restored on
    the way out (for @hydra.main)."""
    from hydra import initialize_config_dir, initialize_config_module

    path = where.config_path
    if path.startswith("pkg://"):
        init = initialize_config_module(config_module=path.removeprefix("pkg://"),
                                        version_base="1.3")
    else:
        init = initialize_config_dir(
            config_dir=str(Path(path.removeprefix("file://")).absolute()), version_base="1.3")
    with init:
        if where.config_dir is not None:
            _add_config_dir(path, where.config_dir)
        yield


def _add_config_dir(config_path: str, config_dir: str) -> None:
    """Make Hydra's global instance search `config_dir` first, as @hydra.main does for
    --config-dir (hydra._internal.utils._run_hydra, Hydra 1.3: no public API takes it)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    search_path = create_config_search_path(
        config_path if config_path.startswith("pkg://")
        else f"file://{Path(config_path.removeprefix('file://')).absolute()}")
    search_path.prepend(provider="command-line",
                        path=f"file://{Path(config_dir).absolute()}",
                        anchor=SearchPathQuery(provider="schema"))
    GlobalHydra.instance().clear()  # `_initialized`'s context restores the caller's state
    Hydra.create_main_hydra2(task_name="app", config_search_path=search_path)


class ChdirRefused(Exception):
    """hydra.job.chdir=true: the job would run inside its output folder."""


CHDIR_REFUSED = ("hydra.job.chdir=True: sweeplab keeps its stores (mlflow.db, .sweeplab/, "
                 "data/) in the folder it is started from; run inside each run's output "
                 "folder, every run would get new ones there, and a sweep could never "
                 "resume; leave it false (the default)")


def describe(err: Exception) -> str:
    """One line saying which override failed and what is allowed, from Hydra's message."""
    if isinstance(err, OverrideParseException):
        return (f"cannot parse the override {err.override!r}: {_first_line(err.message)} "
                f"(quote values with brackets, commas, spaces or non-ASCII characters; "
                f"grammar: {OVERRIDE_GRAMMAR})")
    message = str(err)
    # the rest of Hydra's line: a space's expression has spaces ("interval(0.5, 1.0)")
    params = re.match(r"Could not override '(sweep\.params\.[^']+)'\.?\s*To append to "
                      r"your config use \+(.+?)\s*$", message, re.MULTILINE)
    if params:  # the space's keys are dotted names ("model.depth"), not nested sections
        return (f"{params[1]}: a search-space key is set with ++ (add or change: "
                f"++{params[2]}) or + (add only); see `--cfg job` for the keys searched now")
    missing = re.search(r"Could not find '([^']+)'", message)
    if isinstance(err, MissingConfigException) and missing and err.options:
        group, _, name = missing[1].rpartition("/")
        if group:
            return (f"{group}={name}: no such option in config group {group!r}; "
                    f"choose one of {', '.join(err.options)}")
    cause = err.__cause__
    key = getattr(cause, "full_key", None)
    # Hydra's own settings (hydra.*) are not sweeplab's schema: Hydra's message says it
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and key and \
            not str(key).startswith("hydra."):
        nested: dict[str, object] = {}
        for part in reversed(str(key).split(".")):
            nested = {part: nested or None}
        unknown = unknown_keys(nested)
        if unknown:
            return "; ".join(unknown)
    if cause is not None:
        return f"{_one_line(message).removeprefix('Error merging override ')}: " \
               f"{_first_line(str(cause))}"
    return _one_line(message)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _one_line(text: str) -> str:
    """Hydra's message on one line, without the search path it appends and without the
    pointer to HYDRA_FULL_ERROR (there is no traceback to see)."""
    text = text.split("Config search path:", 1)[0]
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and "HYDRA_FULL_ERROR" not in line]
    return "; ".join(line.rstrip(".:") for line in lines)
