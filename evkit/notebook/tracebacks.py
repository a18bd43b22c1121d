"""Short tracebacks in IPython for evkit's own errors.

``import evkit`` inside IPython installs them (``evkit/__init__.py``), and so does
``%load_ext evkit``; either way once. The user's frames down to the call into evkit, and
the message; not the 40 lines of runtime, asyncio and engine frames in between. ``%tb``
still prints the full one.
"""

from __future__ import annotations

import logging
import os
import sys
import types

import evkit
from evkit.errors import EvkitError

logger = logging.getLogger("evkit.notebook")

_EVKIT_DIR = os.path.dirname(os.path.abspath(evkit.__file__)) + os.sep


def user_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback cut before the first frame inside the evkit package.

    It ends at the user's call into evkit. Unchanged if no frame, or only frames, are
    evkit's.
    """
    kept: list[types.TracebackType] = []
    entry = tb
    while entry is not None:
        if os.path.abspath(entry.tb_frame.f_code.co_filename).startswith(_EVKIT_DIR):
            break
        kept.append(entry)
        entry = entry.tb_next
    if entry is None or not kept:
        return tb
    short: types.TracebackType | None = None
    for item in reversed(kept):
        short = types.TracebackType(short, item.tb_frame, item.tb_lasti, item.tb_lineno)
    return short


def _show_short(
    shell: object,
    etype: type[BaseException],
    value: BaseException,
    tb: types.TracebackType,
    tb_offset: object = None,
) -> list[str]:
    # Keep the full traceback for %tb / %debug.
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
    stb: list[str] = shell.InteractiveTB.structured_traceback(  # type: ignore[attr-defined]
        etype, value, user_frames(tb), tb_offset=tb_offset
    )
    shell._showtraceback(etype, value, stb)  # type: ignore[attr-defined]
    return stb


def install_short_tracebacks(shell: object) -> bool:
    """Show evkit errors raised in cells with short tracebacks.

    Does nothing when another custom exception handler is installed (IPython allows only
    one), so evkit never replaces a handler you set.

    Returns:
        True when installed (or already installed by evkit).
    """
    current = getattr(shell, "custom_exceptions", ())
    if current == (EvkitError,):
        return True
    if current:
        logger.info("evkit: a custom exception handler is already set; evkit errors keep full tracebacks")
        return False
    shell.set_custom_exc((EvkitError,), _show_short)  # type: ignore[attr-defined]
    return True
