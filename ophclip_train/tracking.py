"""Experiment tracking through Accelerate's trackers: a JSON-lines tracker that is always on, and TensorBoard when
`tensorboard` or `tensorboardX` is installed (accelerate's own tracker, which falls back to tensorboardX)."""

import json
import logging
import math
import os
import time

from accelerate.tracking import GeneralTracker, on_main_process


logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"


def _jsonable(value):
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class JSONLinesTracker(GeneralTracker):
    """Writes every `accelerator.log(values, step)` call as one JSON line `{"step", "time", **values}` to
    `<logging_dir>/<run_name>/metrics.jsonl`, and the run's configuration to `config.json` beside it.

    Lines are flushed at once, so the file can be followed while training (`tail -f`) and survives a crash.
    """

    name = "jsonl"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike):
        super().__init__()
        self.run_name = run_name
        self.directory = os.path.join(os.fspath(logging_dir), run_name)
        self.path = os.path.join(self.directory, METRICS_FILE)
        self._file = None

    @on_main_process
    def start(self):
        os.makedirs(self.directory, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    @property
    def tracker(self):
        return self._file

    @on_main_process
    def store_init_configuration(self, values: dict):
        with open(os.path.join(self.directory, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump({k: _jsonable(v) for k, v in values.items()}, f, indent=2, sort_keys=True)
            f.write("\n")

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs):
        record = {"step": step, "time": round(time.time(), 3)}
        record.update({k: _jsonable(v) for k, v in values.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    @on_main_process
    def finish(self):
        if self._file is not None and not self._file.closed:
            self._file.close()


def make_trackers(names: list[str], run_name: str, logging_dir) -> list:
    """The trackers for `Accelerator(log_with=...)`: the JSON-lines tracker first, then TensorBoard when asked for and
    installed (a warning says how to get it otherwise)."""
    from accelerate.utils import is_tensorboard_available

    trackers = [JSONLinesTracker(run_name, logging_dir)]
    if "tensorboard" in names:
        if is_tensorboard_available():
            trackers.append("tensorboard")
        else:
            logger.warning("TensorBoard logging skipped: neither tensorboard nor tensorboardX is installed "
                           "(`pip install tensorboardX`); metrics still go to the JSON-lines log.")
    return trackers


def read_metrics(path) -> list[dict]:
    """The records of a `metrics.jsonl` file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


__all__ = ["JSONLinesTracker", "METRICS_FILE", "make_trackers", "read_metrics"]
