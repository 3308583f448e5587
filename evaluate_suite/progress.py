"""Progress bars of the evaluation suite (frame embedding, retrieval batches, probe fits, the table's runs).

Like transformers' `logging.disable_progress_bar()`: bars go to stderr and are shown by default only when stderr is a
terminal, so logs and pipes stay clean. `set_progress(False)` (the commands' `--quiet`) turns them off,
`set_progress(True)` on even without a terminal, `set_progress(None)` back to the terminal check.

>>> set_progress(False)
>>> list(progress_bar(range(3), desc="frames"))
[0, 1, 2]
>>> set_progress(None)
"""

import sys


_enabled: bool | None = None  # None: only when stderr is a terminal


def set_progress(enabled: bool | None) -> None:
    """Show progress bars always (True), never (False), or when stderr is a terminal (None, the default)."""
    global _enabled
    _enabled = enabled


def progress_setting() -> bool | None:
    """What `set_progress` was last given (None: the terminal check)."""
    return _enabled


def progress_enabled() -> bool:
    """Whether a bar would be shown now."""
    if _enabled is not None:
        return _enabled
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def progress_bar(iterable=None, *, total=None, desc: str | None = None, unit: str = "it"):
    """A tqdm bar over `iterable` on stderr (a plain pass-through iterator when bars are off)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not progress_enabled(), leave=False,
                file=sys.stderr, dynamic_ncols=True)


__all__ = ["progress_bar", "progress_enabled", "progress_setting", "set_progress"]
