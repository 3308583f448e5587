"""Writing OphVL shards: atomically, resumably, in a shard count that divides evenly across readers.

A `ShardWriter` fills `data/<subset>/part-NNNNN.tar` files. Each part is written as `part-NNNNN.tar.tmp` and renamed
when complete, and only then recorded, with its sample keys, in a manifest (itself replaced atomically). A build that
is killed therefore loses at most the part it was writing; on restart the writer drops leftovers (temporary files and
parts the manifest does not know), and reports the keys it already holds so the build skips them: nothing is
duplicated and nothing is lost. `finalize` renames (or, to reach a multiple of the reader count, re-packs) the parts
into `train-00000-of-NNNNN.tar` files. The manifest says which set is the data at every moment (the parts until the
shards are recorded, the shards after): whatever is not in it is removed on restart, so a finalize killed at any point
and rerun, even with another shard count, never leaves two sets side by side (samples read twice).

A build spread over several processes gives each its own writer in its own folder; at the end one writer takes the
others' finished parts in as its own (`adopt_parts`: recorded first, then renamed, so a kill in between is completed
on restart) and finalizes them all as one set.
"""

import io
import json
import math
import os
import re
import tarfile
from pathlib import Path

from .format import SPLIT, SUBSETS, shard_name, validate_record
from .reader import RefuseBrokenSamples, iter_shard_samples


MANIFEST = ".ophvl-manifest.json"
# What `finalize` writes (`format.shard_name`), and its temporary files.
SHARD_NAME = re.compile(rf"^{SPLIT}-\d{{5,}}-of-\d{{5,}}\.tar(\.tmp)?$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # reproducible archives
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def read_whole_shard(path):
    """Yield `(key, {"mp4": bytes, "json": bytes})` from one of our own tar files, in order, through OphVL's one
    reader (`reader.iter_shard_samples`). Made for shards that must be read whole, such as the parts `finalize`
    re-packs: a broken sample or a shard that ends early raises `reader.BrokenShardError`, naming it, instead of being
    skipped (a skip there would drop a sample from the dataset without a trace)."""
    counter, source = RefuseBrokenSamples(), str(path)
    for key, parts, problem in iter_shard_samples(source, counter=counter, source=source):
        if problem:
            counter.add(*problem, key=key, source=source)
        yield key, parts


class ShardWriter:
    """Writes the samples of one OphVL subset under `root/data/<subset>/`.

    Args:
        root: the dataset folder (laid out like the Hub repo).
        subset: `"clips"`, `"videos"` or `"silent"`.
        samples_per_part: samples per tar part before `finalize` balances them.
    """

    def __init__(self, root, subset: str, samples_per_part: int = 64):
        if subset not in SUBSETS:
            raise ValueError(f"unknown OphVL subset {subset!r}; expected one of {SUBSETS}")
        if samples_per_part < 1:
            raise ValueError(f"samples_per_part must be >= 1, got {samples_per_part}")
        self.subset = subset
        self.samples_per_part = samples_per_part
        self.dir = Path(root) / "data" / subset
        self.dir.mkdir(parents=True, exist_ok=True)
        self._manifest_path = self.dir / MANIFEST
        self._manifest = {"subset": subset, "parts": [], "shards": None}
        if self._manifest_path.exists():
            self._manifest = json.loads(self._manifest_path.read_text())
        self.done_keys = {key for part in self._manifest["parts"] for key in part["keys"]}
        self._tar = None
        self._tar_keys: list[str] = []
        self._drop_leftovers()

    @property
    def finalized(self) -> bool:
        return self._manifest["shards"] is not None

    def _drop_leftovers(self):
        """Bring the folder to what the manifest says, whatever point a kill interrupted.

        Unfinalized: the recorded parts are the data; temporary files, unrecorded parts and any `train-*` shard (the
        output of a finalize that was killed before it was recorded; a rerun may choose another shard count, so these
        would be read beside the new ones) are removed. Finalized: pending renames are done, then everything that is
        not one of the recorded shards goes: parts, temporary files, shards of another count."""
        self._finish_moves()
        if self.finalized:
            # Finish a finalize that was interrupted: pending renames first, then parts that were re-packed.
            for part, name in self._manifest.get("renames", {}).items():
                if (self.dir / part).exists():
                    os.replace(self.dir / part, self.dir / name)
            shards = set(self._manifest["shards"])
            for path in list(self.dir.iterdir()):
                if path.name.endswith(".tmp") or path.name.startswith("part-") or (
                        SHARD_NAME.match(path.name) and path.name not in shards):
                    path.unlink()
            return
        known = {part["name"] for part in self._manifest["parts"]}
        for path in list(self.dir.iterdir()):
            if (path.name.endswith(".tmp") or (path.name.startswith("part-") and path.name not in known)
                    or SHARD_NAME.match(path.name)):
                path.unlink()

    def _finish_moves(self):
        """Complete the renames of parts taken from other writers (`adopt_parts`) that a kill interrupted: the
        manifest already counts them as this writer's parts, so they must be here before anything is cleaned."""
        moves = self._manifest.get("moves")
        if not moves:
            return
        for name, origin in moves.items():
            source, target = self.dir / origin, self.dir / name
            if source.exists():
                os.replace(source, target)
            elif not target.exists():
                raise RuntimeError(f"part {origin} (to become {target}) is missing: it was recorded as taken into "
                                   f"{self.dir} but is neither there nor in its old place")
        del self._manifest["moves"]
        self._save_manifest()

    def adopt_parts(self, folder) -> list[str]:
        """Take the finished parts of another writer of this subset (`folder`: its `data/<subset>/`, on the same file
        system) in as this writer's next parts, by renaming them; returns their new names.

        Each part is recorded here (with its keys, and where it comes from) before it is moved, and a part once taken
        is remembered by its origin, so adopting the same folder again (a rerun after a kill) takes only what is new.
        A key this writer already holds is refused: the processes of a build write disjoint sets of videos."""
        if self.finalized:
            raise RuntimeError(f"the {self.subset} shards in {self.dir} are finalized; cannot take in more parts")
        self.flush()
        folder = Path(folder)
        manifest_path = folder / MANIFEST
        if not manifest_path.exists():
            return []
        recorded = json.loads(manifest_path.read_text())
        if recorded.get("shards") is not None:
            raise RuntimeError(f"{folder} holds finalized shards, not parts; expected the parts of an unfinished "
                               "writer")
        origin = Path(os.path.relpath(folder, self.dir)).as_posix()
        taken = self._manifest.get("adopted", {}).get(origin, [])
        new = [part for part in recorded["parts"] if part["name"] not in taken]
        held = set(self.done_keys)
        for part in new:  # all checked before anything changes
            twice = sorted(held & set(part["keys"]))
            if twice:
                raise ValueError(f"{folder / part['name']} holds {len(twice)} sample key(s) that {self.dir} already "
                                 f"holds, e.g. {twice[0]!r}; expected every process to write other videos")
            held.update(part["keys"])
        moves, names = {}, []
        for part in new:
            name = f"part-{len(self._manifest['parts']):05d}.tar"
            self._manifest["parts"].append({"name": name, "keys": list(part["keys"])})
            moves[name] = f"{origin}/{part['name']}"
            names.append(name)
        self.done_keys = held
        if moves:
            self._manifest.setdefault("adopted", {})[origin] = [*taken, *(part["name"] for part in new)]
            self._manifest["moves"] = moves
            self._save_manifest()  # recorded before moving: a kill from here on is completed by `_finish_moves`
            self._finish_moves()
        return names

    def _save_manifest(self):
        atomic_write_bytes(self._manifest_path, json.dumps(self._manifest, indent=1).encode())

    def __contains__(self, key: str) -> bool:
        return key in self.done_keys or key in self._tar_keys

    def __len__(self) -> int:
        return len(self.done_keys) + len(self._tar_keys)

    def write(self, key: str, video: bytes, record: dict) -> None:
        """Add one sample; `record` must be valid for the subset (see `format.validate_record`)."""
        if self.finalized:
            raise RuntimeError(f"the {self.subset} shards in {self.dir} are finalized; write to a new folder")
        if "." in key or "/" in key or not key:
            raise ValueError(f"sample key {key!r} must be non-empty without dots or slashes")
        if key in self:
            raise ValueError(f"sample key {key!r} was already written to {self.subset}")
        problem = validate_record(self.subset, record)
        if problem:
            raise ValueError(f"invalid {self.subset} record for {key!r}: {problem}")
        if self._tar is None:
            self._tar_name = f"part-{len(self._manifest['parts']):05d}.tar"
            self._tar = tarfile.open(self.dir / (self._tar_name + ".tmp"), "w")
        _add_member(self._tar, f"{key}.mp4", bytes(video))
        _add_member(self._tar, f"{key}.json", json.dumps(record, ensure_ascii=False, sort_keys=True).encode())
        self._tar_keys.append(key)
        if len(self._tar_keys) >= self.samples_per_part:
            self.flush()

    def flush(self) -> None:
        """Close the part being written, rename it into place and record it."""
        if self._tar is None:
            return
        self._tar.close()
        os.replace(self.dir / (self._tar_name + ".tmp"), self.dir / self._tar_name)
        self._manifest["parts"].append({"name": self._tar_name, "keys": self._tar_keys})
        self._save_manifest()
        self.done_keys.update(self._tar_keys)
        self._tar, self._tar_keys = None, []

    def finalize(self, shard_multiple: int = 1) -> list[Path]:
        """Turn the parts into `train-XXXXX-of-NNNNN.tar` shards whose count is a multiple of `shard_multiple`.

        Streaming readers split shards across processes × DataLoader workers; a count that is a multiple of that
        product gives every reader the same number of shards. Parts are renamed when their count already fits,
        otherwise their samples are re-packed evenly (copying bytes, no re-encoding). Shards finalized earlier with a
        count that is not a multiple of `shard_multiple` are re-packed to one that is.
        """
        if shard_multiple < 1:
            raise ValueError(f"shard_multiple must be >= 1, got {shard_multiple}")
        if self.finalized:
            shards = self._manifest["shards"]
            if len(shards) % shard_multiple == 0:
                return [self.dir / name for name in shards]
            # Finalized before with another shard count (a build killed after its shards were recorded, rerun with
            # another --shard-multiple): re-pack the shards. Until the new set is recorded the old one is the data.
            sources = [self.dir / name for name in shards]
        else:
            self.flush()
            self._drop_leftovers()  # shards of a finalize that failed earlier in this process
            sources = [self.dir / part["name"] for part in self._manifest["parts"]]
        total = max(shard_multiple, math.ceil(len(sources) / shard_multiple) * shard_multiple)
        names = [shard_name(i, total) for i in range(total)]
        # Record the outcome before removing anything, so that a finalize killed at any point either completes on
        # restart (renames recorded) or is redone from the parts (nothing recorded: its shards are dropped).
        if len(sources) == total and not self.finalized:
            self._manifest["renames"] = {part.name: name for part, name in zip(sources, names)}
        else:
            self._repack(sources, names)
            self._manifest.pop("renames", None)
        self._manifest["shards"] = names
        self._save_manifest()
        self._drop_leftovers()
        return [self.dir / name for name in names]

    def _repack(self, parts: list[Path], names: list[str]) -> None:
        keys = [key for part in self._manifest["parts"] for key in part["keys"]]
        per_shard = [len(keys) // len(names) + (i < len(keys) % len(names)) for i in range(len(names))]
        samples = (sample for part in parts for sample in read_whole_shard(part))
        for name, count in zip(names, per_shard):
            tmp = self.dir / (name + ".tmp")
            with tarfile.open(tmp, "w") as tar:
                for _ in range(count):
                    key, sample = next(samples)
                    for ext in sorted(sample):
                        _add_member(tar, f"{key}.{ext}", sample[ext])
            os.replace(tmp, self.dir / name)
