"""What the command-line entry points share: one-line errors for the user's mistakes.

:func:`user_errors` turns the errors a user can fix into ``error: <value>: <problem>``
and exit status 2. :func:`run_cli` checks the command line before Hydra starts a run:
override grammar, unknown keys and config options, and the settings of
:func:`fashionseg.settings.check_settings`, each one line with a hint, exit 2, and no
run directory created.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from fashionseg.errors import UsageError

__all__ = ["UsageError", "check_command_line", "is_user_error", "run_cli", "user_errors"]

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("fashionseg")


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class DiskFullError(Exception):
    """The disk of an output folder filled up (the message names the folder)."""


@contextmanager
def disk_full_is_one_line(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Turn "no space left on device" (ENOSPC) into a :class:`DiskFullError` naming the
    folder written to (the failing file's folder when the error names it, else ``folder``)."""
    try:
        yield
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        where = Path(os.fsdecode(err.filename)).parent if err.filename else Path(folder)
        raise DiskFullError(
            f"{where}: no space left on device (free some space, then resume=true)"
        ) from None


# the errors a user can fix, by defining module: looked up in sys.modules, so that a CLI
# that fails on its settings never imports torch just to name the error
USER_ERRORS = (
    ("fashionseg.errors", "UsageError"),
    ("fashionseg.cli", "DiskFullError"),
    ("fashionseg.data.io", "DataError"),
    ("fashionseg.model.checkpoint", "CheckpointError"),
    ("fashionseg.model.base", "NonFiniteLossError"),
    ("fashionseg.runtime.sidecar", "ModelFileError"),
    ("fashionseg.export", "ExportError"),
)


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is one of :data:`USER_ERRORS` (a module never imported raised none)."""
    for module, name in USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(err, cls):
            return True
    return False


def user_errors(fn: F) -> F:
    """Turn the errors a user can fix into one ``error: ...`` line and exit status 2.

    Bad data, unusable checkpoints, impossible settings and a diverging loss name the
    file, value or step in their message; a traceback would only hide it. Anything else
    is a bug and keeps its traceback. In a multirun the error is logged and re-raised
    so that Hydra marks that job failed and goes on with the others.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if not is_user_error(err):
                raise
            if _in_multirun():
                log.error("%s", err)
                raise  # Hydra records the failed job and runs the others
            print(f"error: {err}", file=sys.stderr)  # once: not also as a log line
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
QUOTE_HINT = (
    "quote values holding spaces, parentheses, ~ or other special characters, "
    """e.g. 'data.root="/data/my photos (2024)"'"""
)
# Hydra's own flags: these runs are Hydra's business (printing the config, help, ...)
HYDRA_FLAGS = ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--version")


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def check_command_line(args: Sequence[str], config_name: str, cli: str) -> None:
    """Raise :class:`UsageError` for an override Hydra cannot parse or apply, or a
    setting that cannot work (single runs; a multirun's jobs check their own)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from fashionseg.settings import check_settings

    args, config_dir = split_config_dir(args)
    if any(a.split("=")[0] in HYDRA_FLAGS or a.startswith(("-c", "--config")) for a in args):
        return
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    if config_dir is not None:
        if not Path(config_dir).is_dir():
            raise UsageError(f"--config-dir {config_dir}: folder not found")
        # what Hydra's --config-dir does: the folder searched before the project's conf/
        overrides.append(f"hydra.searchpath=[file://{Path(config_dir).resolve()}]")
    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except OverrideParseException as err:
            raise UsageError(
                f"{override}: Hydra cannot parse it ({_first_line(err)}); {QUOTE_HINT}"
            ) from None
    if multirun:
        return
    cfg = _compose(config_name, overrides)
    check_settings(cfg, cli)


def split_config_dir(args: Sequence[str]) -> tuple[list[str], str | None]:
    """``args`` without Hydra's ``--config-dir DIR`` (``-cd DIR``, ``--config-dir=DIR``),
    and that DIR (None when not given): a user's own config folder, e.g. with task/*.yaml."""
    rest: list[str] = []
    config_dir = None
    items = iter(args)
    for arg in items:
        if arg in ("--config-dir", "-cd"):
            config_dir = next(items, None)
        elif arg.startswith("--config-dir="):
            config_dir = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, config_dir


def _compose(config_name: str, overrides: list[str]) -> Any:
    """The config these overrides make, or a one-line UsageError naming the override."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name=config_name):
            return compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        message = " ".join(str(err).split())
        culprit = next((o for o in overrides if o.split("=")[0].lstrip("+~") in message), None)
        where = culprit or "command line"
        if "not in struct" in message or "Could not override" in message:
            key = (culprit or "?").split("=")[0].lstrip("+~")
            raise UsageError(
                f"{where}: unknown key {key!r} (list the keys: python -m fashionseg."
                f"{config_name} --cfg job; add a new one with +{culprit or key})"
            ) from None
        if "Could not find" in message or "Could not load" in message:
            lines = [x.strip() for x in str(err).splitlines() if x.strip()]
            options = []
            heads = [i for i, x in enumerate(lines) if x.startswith("Available options")]
            if heads:
                for line in lines[heads[0] + 1 :]:
                    if line.endswith(":"):
                        break
                    options.append(line)
            shown = f" (options: {', '.join(options)})" if options else ""
            raise UsageError(f"{where}: {lines[0]}{shown}") from None
        raise UsageError(f"{where}: {_first_line(err)}; {QUOTE_HINT}") from None


def run_cli(hydra_main: Callable[[], Any], config_name: str, cli: str) -> Any:
    """Check ``sys.argv`` (one ``error:`` line, exit 2), then run the Hydra app."""
    try:
        check_command_line(sys.argv[1:], config_name, cli)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return hydra_main()
