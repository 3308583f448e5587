"""Tests of the OphVL build across processes (issue 20): `accelerate launch --multi_gpu --num_processes 2 -m
datasets_ophvl.build SRC OUT` on CPUs (gloo) builds the same dataset as one process, and a process killed mid-build
is resumed without losing or repeating a sample.

The media are made here with PyAV (helpers of tests/test_ophvl_build.py); ASR is skipped, so no model is needed.
Every build uses one sample per tar part and `--shard-multiple 2`, so that one process and two processes end with
the same shard count and the whole dataset card can be compared.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets_ophvl.build import (
    PROCESSES_FILE, Processes, SharedBuildError, assign_videos, main, worker_root, worker_roots,
)
from datasets_ophvl.curation.sources import Source
from datasets_ophvl.shards import MANIFEST, ShardWriter
from test_ophvl_build import PHACO_VTT, TRAB_SRT, VITRECTOMY_JSON, read_subsets, snapshot, write_video
from ophclip_testing import free_port


REPO_ROOT = Path(__file__).resolve().parent.parent
VIDEOS = 7  # media files in the source folder, refused ones included


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("distributed") / "src"
    (src / "surgeon_b").mkdir(parents=True)
    write_video(src / "phaco.mp4", 8, seed=1)
    (src / "phaco.vtt").write_text(PHACO_VTT)
    write_video(src / "surgeon_b" / "trab.mp4", 8, seed=2)
    (src / "surgeon_b" / "trab.srt").write_text(TRAB_SRT)
    write_video(src / "vitrectomy.mp4", 6, seed=3)
    (src / "vitrectomy.json").write_text(json.dumps(VITRECTOMY_JSON))
    (src / "titles.json").write_text(json.dumps({"phaco": "Phacoemulsification of a dense cataract"}))
    write_video(src / "silent_a.mp4", 6, audio=False, seed=4)
    write_video(src / "silent_b.mp4", 4, audio=False, seed=5)
    write_video(src / "tiny.mp4", 3, size=(32, 32), audio=False)  # refused by the probe: frames too small
    (src / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4096))  # refused: not a video
    return src


def build_args(src, out, *extra) -> list[str]:
    return [str(src), str(out), "--skip-stage", "asr", "--set", "probe.min_duration=2", "--set",
            "probe.min_short_side=64", "--set", "segment.min_seconds=2", "--samples-per-part", "1",
            "--shard-multiple", "2", "--name", "OphVL-test", "--no-progress", *extra]


@pytest.fixture(scope="module")
def one_process(source_dir):
    """The reference: the same folder built by one process (in this process: no launcher)."""
    out = source_dir.parent / "one"
    assert main(build_args(source_dir, out)) == 0
    return out


def launch(target: list[str], args: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    """`accelerate launch --multi_gpu --num_processes N` on CPUs (gloo); `target` is `["-m", module]` or a script."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests"),
                                                        os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), *target, *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def content(out: Path) -> dict:
    """What must not depend on the number of processes: every sample's bytes and json, the card, the report."""
    return {"samples": read_subsets(out), "card": (out / "README.md").read_text(),
            "report": json.loads((out / ".ophvl-build" / "report.json").read_text())}


def progress(root: Path) -> list[dict]:
    path = root / ".ophvl-build" / "progress.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --------------------------------------------------------------------------------------------------------------------
# End to end, two CPU processes


def test_two_processes_build_the_same_dataset_as_one(source_dir, one_process):
    out = source_dir.parent / "two"
    result = launch(["-m", "datasets_ophvl.build"], build_args(source_dir, out))
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count("OphVL build summary") == 1  # printed by the main process only

    expected = content(one_process)
    assert sum(len(samples) for samples in expected["samples"].values()) > 10
    assert content(out) == expected
    # Each process built a share of the videos, none twice, each into its own folder; their parts all became shards.
    roots = worker_roots(out)
    assert roots == [worker_root(out, 0, 2), worker_root(out, 1, 2)]
    shares = [{entry["video_id"] for entry in progress(root)} for root in roots]
    assert all(shares) and not shares[0] & shares[1] and len(shares[0] | shares[1]) == VIDEOS
    assert json.loads((out / ".ophvl-build" / PROCESSES_FILE).read_text())["processes"] == 2
    assert not [p for p in out.rglob("*") if p.name.startswith("part-") or p.name.endswith(".tmp")]
    assert (out / ".ophvl-build" / "finalized").exists()
    shards = sorted(p.name for p in (out / "data" / "clips").glob("train-*.tar"))
    count = len(expected["samples"]["clips"]) + len(expected["samples"]["clips"]) % 2
    assert shards == [f"train-{i:05d}-of-{count:05d}.tar" for i in range(count)]


# Launched as the build command, except that process 1 SIGKILLs itself right after its first tar part is finished
# (closed, renamed, recorded): a kill at a chosen point, whatever the machine's speed.
KILL_PROCESS_1 = """
import os, signal, sys
from datasets_ophvl.shards import ShardWriter

if os.environ.get("RANK") == "1":
    finish = ShardWriter.flush

    def flush(self):
        opened = self._tar is not None
        finish(self)
        if opened:
            os.kill(os.getpid(), signal.SIGKILL)

    ShardWriter.flush = flush

from datasets_ophvl.build import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_process_resumes_without_losing_or_repeating_samples(source_dir, one_process, tmp_path, capsys):
    out = tmp_path / "out"
    script = tmp_path / "kill_process_1.py"
    script.write_text(KILL_PROCESS_1)
    killed = launch([str(script)], build_args(source_dir, out))
    assert killed.returncode != 0
    assert re.search(r"exitcode\s*:\s*-9\b", killed.stderr), killed.stderr[-4000:]  # process 1, SIGKILL
    assert len(list(worker_root(out, 1, 2).glob("data/*/part-*.tar"))) == 1
    assert not (out / ".ophvl-build" / "finalized").exists() and not (out / "README.md").exists()
    assert not list(out.glob("data/*/train-*.tar"))
    done_before = {root.name: [e["video_id"] for e in progress(root)] for root in worker_roots(out)}

    # Resuming with another number of processes is refused, and changes nothing.
    before = snapshot(out)
    capsys.readouterr()
    assert main(build_args(source_dir, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "started by 2 processes, not 1" in err and "--num_processes 2" in err
    assert snapshot(out) == before

    resumed = launch(["-m", "datasets_ophvl.build"], build_args(source_dir, out))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert content(out) == content(one_process)
    # The videos finished before the kill were not built again; every video was recorded once, by its process.
    for root in worker_roots(out):
        log = [e["video_id"] for e in progress(root)]
        assert log[:len(done_before[root.name])] == done_before[root.name] and len(log) == len(set(log))
    assert sum(len(progress(root)) for root in worker_roots(out)) == VIDEOS


# Launched as the build command, except that the main process SIGKILLs itself while finalizing: after taking in the
# parts of both processes for `clips` and those of process 0 for `videos`.
KILL_MAIN_WHILE_FINALIZING = """
import os, signal, sys
from datasets_ophvl.shards import ShardWriter

if os.environ.get("RANK") == "0":
    adopt, calls = ShardWriter.adopt_parts, []

    def adopt_parts(self, folder):
        names = adopt(self, folder)
        calls.append(folder)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return names

    ShardWriter.adopt_parts = adopt_parts

from datasets_ophvl.build import main
sys.exit(main(sys.argv[1:]))
"""


def test_main_process_killed_while_finalizing_resumes(source_dir, one_process, tmp_path):
    out = tmp_path / "out"
    script = tmp_path / "kill_main.py"
    script.write_text(KILL_MAIN_WHILE_FINALIZING)
    killed = launch([str(script)], build_args(source_dir, out))
    assert re.search(r"exitcode\s*:\s*-9\b", killed.stderr), killed.stderr[-4000:]
    assert list(out.glob("data/clips/train-*.tar")) and list(out.glob("data/videos/part-*.tar"))
    assert list(worker_root(out, 1, 2).glob("data/videos/part-*.tar"))  # not taken in yet
    assert not (out / ".ophvl-build" / "finalized").exists() and not (out / "README.md").exists()

    resumed = launch(["-m", "datasets_ophvl.build"], build_args(source_dir, out))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert content(out) == content(one_process)
    assert not [p for p in out.rglob("*") if p.name.startswith("part-") or p.name.endswith(".tmp")]


# Launched as the build command, except that process 1 keeps its folder on "its own disk" (another folder): what a
# per-machine OUT without a shared file system gives.
OWN_DISK_FOR_PROCESS_1 = """
import os, sys
from pathlib import Path
import datasets_ophvl.build as build

elsewhere = Path(sys.argv.pop(1))
if os.environ.get("RANK") == "1":
    build.worker_root = lambda out, index, count: elsewhere / f"{index:05d}-of-{count:05d}"
sys.exit(build.main(sys.argv[1:]))
"""


def test_out_that_the_machines_do_not_share_is_not_finalized(source_dir, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "node1"
    script = tmp_path / "own_disk.py"
    script.write_text(OWN_DISK_FOR_PROCESS_1)
    result = launch([str(script), str(elsewhere)], build_args(source_dir, out))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "other processes built are not recorded in" in lines[0], result.stderr[-4000:]
    assert "expected OUT on a file system that every machine shares" in lines[0]
    assert list(elsewhere.glob("*/data/*/part-*.tar"))  # process 1 built its share, where the main one cannot see it
    assert not (out / ".ophvl-build" / "finalized").exists() and not (out / "README.md").exists()
    assert not list(out.glob("data/*/train-*.tar"))


def test_a_refusal_is_said_once_and_leaves_nothing(tmp_path):
    """The checks run on every process and agree before anything is written: a source without media stops both
    processes with one line, printed once."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("no videos here")
    result = launch(["-m", "datasets_ophvl.build"], build_args(src, tmp_path / "out"))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {src} holds no media files: expected videos ending in")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------------------------
# The parts, in one process


def _source(folder: Path, name: str, size: int) -> Source:
    path = folder / name
    path.write_bytes(b"\0" * size)
    return Source(path, path.stem, path.stem, None, None, None)


def test_assignment_balances_bytes_and_keeps_earlier_choices(tmp_path):
    sizes = {"a": 900, "b": 500, "c": 400, "d": 300, "e": 100}
    sources = [_source(tmp_path, f"{name}.mp4", size) for name, size in sizes.items()]
    plan = assign_videos(sources, 2)
    assert plan == assign_videos(list(reversed(sources)), 2)  # the same on every process, whatever the order
    load = [sum(sizes[v] for v, index in plan.items() if index == i) for i in range(2)]
    assert plan["a"] == 0 and sorted(load) == [1000, 1200]  # the best split of these sizes
    # A resumed build keeps every earlier choice (those processes may hold the videos' samples) and balances the rest.
    earlier = {"a": 1, "b": 1}
    sources.append(_source(tmp_path, "f.mp4", 700))
    again = assign_videos(sources, 2, earlier)
    assert again["a"] == again["b"] == 1 and again["f"] == again["c"] == 0
    assert assign_videos(sources, 3, {"a": 5})["a"] in (0, 1, 2)  # an index of another process count is redone


def _fill(root: Path, subset: str, keys: list[str]) -> ShardWriter:
    writer = ShardWriter(root, subset, samples_per_part=1)
    for key in keys:
        writer.write(key, key.encode(), {"video_id": key, "duration": 1.0, "title": key})
    return writer


def test_adopted_parts_survive_a_kill_between_record_and_rename(tmp_path, monkeypatch):
    first, second = tmp_path / "p0", tmp_path / "p1"
    _fill(first, "silent", ["a", "b"])
    _fill(second, "silent", ["c"])
    out = tmp_path / "out"
    writer = ShardWriter(out, "silent")
    assert writer.adopt_parts(first / "data" / "silent") == ["part-00000.tar", "part-00001.tar"]

    class Killed(BaseException):
        pass

    def kill(*args):
        raise Killed()

    with monkeypatch.context() as patch:
        patch.setattr(ShardWriter, "_finish_moves", lambda self: kill() if self._manifest.get("moves") else None)
        with pytest.raises(Killed):
            writer.adopt_parts(second / "data" / "silent")
    assert (second / "data" / "silent" / "part-00000.tar").exists()  # recorded as taken, not yet moved
    reopened = ShardWriter(out, "silent")  # completes the move before cleaning
    assert not (second / "data" / "silent" / "part-00000.tar").exists()
    assert reopened.adopt_parts(second / "data" / "silent") == []  # taken once only
    assert reopened.adopt_parts(first / "data" / "silent") == []
    shards = reopened.finalize(2)  # three parts, re-packed into four shards
    assert [p.name for p in shards] == [f"train-{i:05d}-of-00004.tar" for i in range(4)]
    assert set(read_subsets(out)["silent"]) == {"a", "b", "c"}


def test_adopting_a_key_twice_is_refused(tmp_path):
    _fill(tmp_path / "p0", "silent", ["a"])
    _fill(tmp_path / "p1", "silent", ["a"])
    writer = ShardWriter(tmp_path / "out", "silent")
    writer.adopt_parts(tmp_path / "p0" / "data" / "silent")
    with pytest.raises(ValueError, match="already holds, e.g. 'a'; expected every process to write other videos"):
        writer.adopt_parts(tmp_path / "p1" / "data" / "silent")
    manifest = json.loads((tmp_path / "out" / "data" / "silent" / MANIFEST).read_text())
    assert [part["keys"] for part in manifest["parts"]] == [["a"]]


def test_one_process_agrees_with_itself():
    processes = Processes()
    assert processes.is_main and processes.gather_text("x") == ["x"]
    processes.agree(None)
    with pytest.raises(SharedBuildError, match="bad"):
        processes.agree(SharedBuildError("bad"))
