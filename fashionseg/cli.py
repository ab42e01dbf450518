"""What the command-line entry points share: one-line errors for the user's mistakes."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("fashionseg")


class UsageError(ValueError):
    """A setting on the command line that cannot work (the message says which)."""


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def user_errors(fn: F) -> F:
    """Turn the errors a user can fix into one ``error: ...`` line and exit status 2.

    Bad data, unusable checkpoints, impossible settings and a diverging loss name the
    file, value or step in their message; a traceback would only hide it. Anything else
    is a bug and keeps its traceback. In a multirun the error is logged and re-raised
    so that Hydra marks that job failed and goes on with the others.
    """
    from fashionseg.data.io import DataError
    from fashionseg.model.checkpoint import CheckpointError
    from fashionseg.model.module import NonFiniteLossError

    expected = (DataError, CheckpointError, NonFiniteLossError, UsageError)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except expected as err:
            log.error("%s", err)
            if _in_multirun():
                raise  # Hydra records the failed job and runs the others
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
