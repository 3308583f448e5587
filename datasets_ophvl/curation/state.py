"""The build's own bookkeeping inside OUT (`OUT/.ophvl-build/`), which makes a killed build resumable.

- `config.json`: the stages and their settings the build started with. A rerun with other settings is refused
  (mixing two configurations in one dataset would go unnoticed otherwise), unless nothing was built yet: a build
  that stopped before its first video was recorded and its first part written is started afresh with the new
  settings.
- `progress.jsonl`: one line per finished source video: its outcome, counted drops and statistics. A line is added
  only once every sample of the video is in a finished (renamed, recorded) tar part, so a video recorded here
  survives a kill; a video that is not is processed again, and `ShardWriter` skips the samples it already holds. A
  line torn by a kill is dropped on reopening.
- `sources.json`: `{path relative to SRC: [video_id, key]}` for every media file a run has seen, written before any
  video is processed. A rerun gives these files the same ids and keys and no new file takes one of them, so a file
  added to SRC between runs cannot take over a key whose samples are already written (they would be taken for its own
  and dropped).
- `finalized`: written last, once shards and card are complete.
"""

import json
import os
from pathlib import Path

from ..shards import atomic_write_bytes


STATE_DIR = ".ophvl-build"


class BuildState:
    def __init__(self, out):
        self.out = Path(out)
        self.dir = self.out / STATE_DIR
        self.config_path = self.dir / "config.json"
        self.log_path = self.dir / "progress.jsonl"
        self.marker = self.dir / "finalized"
        self.sources_path = self.dir / "sources.json"
        self.videos: dict[str, dict] = {}

    @property
    def exists(self) -> bool:
        return self.dir.is_dir()

    @property
    def finalized(self) -> bool:
        return self.marker.exists()

    def saved_config(self) -> dict | None:
        return json.loads(self.config_path.read_text()) if self.config_path.exists() else None

    def load(self) -> list[bytes] | None:
        """Read the videos finished so far (writes nothing). Returns the intact lines when the log has a torn one
        to drop, else None."""
        self.videos = {}
        if not self.log_path.exists():
            return None
        lines, intact = self.log_path.read_bytes().split(b"\n"), []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # the torn last line of a killed build (or the empty string after the last newline)
            self.videos[entry["video_id"]] = entry
            intact.append(line)
        return intact if len(intact) != len([line for line in lines if line.strip()]) else None

    def start(self, config: dict) -> None:
        """Create the folder, record `config` (the first run, or one that replaces the settings of a build that
        built nothing yet; the caller checks that) and load the videos finished so far."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.saved_config() != config:
            atomic_write_bytes(self.config_path, json.dumps(config, indent=1, sort_keys=True).encode())
        intact = self.load()
        if intact is not None:
            atomic_write_bytes(self.log_path, b"".join(line + b"\n" for line in intact))

    def saved_sources(self) -> dict[str, list[str]]:
        """The ids and keys earlier runs gave the source files (`{relative path: [video_id, key]}`)."""
        return json.loads(self.sources_path.read_text()) if self.sources_path.exists() else {}

    def save_sources(self, sources: dict[str, list[str]]) -> None:
        atomic_write_bytes(self.sources_path, json.dumps(sources, indent=1, sort_keys=True).encode())

    def recorded_keys(self) -> dict[str, str]:
        """`{key: video_id}` of the finished videos."""
        return {entry["key"]: video_id for video_id, entry in self.videos.items() if entry.get("key")}

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.videos

    def record(self, entry: dict) -> None:
        """Append one finished video, durably."""
        with open(self.log_path, "ab") as f:
            f.write(json.dumps(entry, sort_keys=True).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        self.videos[entry["video_id"]] = entry

    def mark_finalized(self) -> None:
        atomic_write_bytes(self.marker, b"")
