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


def user_errors(fn: F) -> F:
    """Turn the errors a user can fix into one ``error: ...`` line and exit status 2.

    Bad data, unusable checkpoints, impossible settings and a diverging loss name the
    file, value or step in their message; a traceback would only hide it. Anything else
    is a bug and keeps its traceback.
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
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
