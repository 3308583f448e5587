"""Writing a folder so that it is either complete or absent, and saying why saved weights do not fit a model.

Both are needed wherever the project writes or reads weights: the checkpoint converter (`convert.py`), the silent-video
memory bank (`datasets_ophvl.knowledge_base`) and the training checkpoints (`ophclip_train.checkpoint`). This module is
not remote code (`save_pretrained` copies only the configuration, modeling and processing files) and imports nothing
but the standard library; being in `modeling_ophclip`, the lowest layer, lets every other package use it.

```python
>>> import pathlib, tempfile
>>> from modeling_ophclip.saving import staged_folder, weight_shape_differences

>>> root = pathlib.Path(tempfile.mkdtemp())
>>> with staged_folder(root / "out") as staging:  # written under a temporary sibling name...
...     _ = (staging / "weights.txt").write_text("new")
>>> (root / "out" / "weights.txt").read_text()  # ...and renamed into place once the block ends without an error
'new'
>>> weight_shape_differences({"a": (2, 3), "b": (4,)}, {"a": (3, 3)}).describe()
'1 parameter(s) of another shape: a (checkpoint [2, 3], this model [3, 3]); 1 parameter(s) not in this model: b'

```
"""

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple


# -- folders that are complete or absent -----------------------------------------------------------------------------


def replace_folder(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename the finished folder `staging` to `target`.

    An existing `target` (a folder, or a link to one) is first moved aside under a hidden sibling name and deleted
    only once `staging` stands in its place; if that rename fails, it is moved back. So a reader of `target` sees
    the old folder or the new one, never a mix, and a crash loses at most the new one.
    """
    staging, target = Path(staging), Path(target)
    if not (target.exists() or target.is_symlink()):
        os.replace(staging, target)
        return
    backup = target.with_name(f".{target.name}.replaced-{uuid.uuid4().hex[:8]}")
    os.replace(target, backup)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(backup, target)
        raise
    if backup.is_dir() and not backup.is_symlink():
        shutil.rmtree(backup, ignore_errors=True)
    else:
        backup.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike, purpose: str = "writing") -> Iterator[Path]:
    """An empty temporary folder beside `target` to write into; it replaces `target` ([`replace_folder`]) when the
    block ends without an exception, and is removed in every case, so an interrupted write leaves `target` as it was.

    Args:
        target: the folder to (re)write; its parent is created if needed.
        purpose: a word in the temporary folder's name (`.<target name>.<purpose>-XXXX`), to tell leftovers apart.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{purpose}-", dir=target.parent))
    try:
        yield staging
        replace_folder(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# -- why weights do not fit ------------------------------------------------------------------------------------------


def listed(items: Iterable[str], limit: int = 5) -> str:
    """`items` sorted and joined with commas, cut after `limit` with how many more there are."""
    items = sorted(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


class WeightShapeDifferences(NamedTuple):
    """How saved weights (a checkpoint) differ from the weights a model expects, by name and shape."""

    missing: list[str]  # expected by the model, absent from the checkpoint
    unexpected: list[str]  # in the checkpoint, not in the model
    resized: list[tuple[str, tuple, tuple]]  # (name, shape in the checkpoint, shape in the model)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.resized)

    def describe(self, noun: str = "parameter", model: str = "this model", limit: int = 5) -> str:
        """One line naming the first `limit` names of each kind of difference, e.g.
        `2 parameter(s) of another shape: w (checkpoint [2], this model [3]), ...; 1 parameter(s) missing from the
        checkpoint: b`; empty when there is none."""
        parts = []
        if self.resized:
            shapes = [f"{name} (checkpoint {list(saved)}, {model} {list(wanted)})"
                      for name, saved, wanted in self.resized]
            parts.append(f"{len(shapes)} {noun}(s) of another shape: {listed(shapes, limit)}")
        if self.missing:
            parts.append(f"{len(self.missing)} {noun}(s) missing from the checkpoint: {listed(self.missing, limit)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} {noun}(s) not in {model}: {listed(self.unexpected, limit)}")
        return "; ".join(parts)


def weight_shape_differences(
    saved: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]]
) -> WeightShapeDifferences:
    """Compare `{name: shape}` of saved weights with `{name: shape}` of the weights a model expects (all sorted)."""
    saved = {name: tuple(shape) for name, shape in saved.items()}
    expected = {name: tuple(shape) for name, shape in expected.items()}
    return WeightShapeDifferences(
        missing=sorted(set(expected) - set(saved)),
        unexpected=sorted(set(saved) - set(expected)),
        resized=[(name, saved[name], expected[name]) for name in sorted(set(saved) & set(expected))
                 if saved[name] != expected[name]],
    )


__all__ = ["WeightShapeDifferences", "listed", "replace_folder", "staged_folder", "weight_shape_differences"]
