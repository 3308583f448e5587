"""The OphVL streaming builder and `load_ophvl`: subsets, plain `load_dataset`, decoding, collation, shuffling,
resuming, sharding across processes x DataLoader workers, the `hf://` code path, and bad input on the read side."""

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")
pytest.importorskip("decord")
av = pytest.importorskip("av")

from datasets_ophvl import OphVL, OphVLCollator, load_ophvl, skip_counts  # noqa: E402
from datasets_ophvl.card import write_dataset_card  # noqa: E402
from datasets_ophvl.format import SUBSETS, record_text  # noqa: E402
from datasets_ophvl.media import encode_video  # noqa: E402
from datasets_ophvl.shards import ShardWriter  # noqa: E402
from modeling_ophclip import OphCLIPModel, OphCLIPVideoProcessor  # noqa: E402
from ophclip_testing import OphCLIPModelTester, tiny_processor  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parent.parent
NUM_FRAMES, FPS, SIZE = 6, 6, 32
NUM_CLIPS = 16  # 8 shards of 2: every one of 2 processes x 2 DataLoader workers reads 2 shards


def make_frames(seed: int, num_frames: int = NUM_FRAMES, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """A moving gradient with a little noise: small, fast to encode, and frames differ from each other."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    frames = [np.stack([x * 255 // width, y * 255 // height, np.full_like(x, (seed * 40 + t * 30) % 256)], -1)
              + rng.integers(0, 20, (height, width, 3)) for t in range(num_frames)]
    return np.clip(frames, 0, 255).astype(np.uint8)


def clip_record(i: int) -> dict:
    return {"video_id": f"case{i // 4}", "start": float(i), "end": i + 1.5,
            "narration": f"the surgeon makes incision {i}", "sentence_ids": [i]}


def video_record(i: int) -> dict:
    return {"video_id": f"case{i}", "duration": 12.0 + i, "title": f"cataract surgery {i}",
            "title_summary": {"surgery": "phacoemulsification", "instruments": ["forceps", "knife"]}}


def silent_record(i: int) -> dict:
    return {"video_id": f"silent{i}", "duration": 30.0, "title": f"silent case {i}"}


RECORDS = {"clips": (clip_record, NUM_CLIPS), "videos": (video_record, 4), "silent": (silent_record, 4)}


@pytest.fixture(scope="module")
def ophvl_repo(tmp_path_factory):
    """A folder laid out like the OphVL Hub repo; returns (root, {subset: {key: (mp4 bytes, record)}})."""
    root = tmp_path_factory.mktemp("ophvl")
    written, stats = {}, {}
    for subset, (make_record, count) in RECORDS.items():
        writer = ShardWriter(root, subset, samples_per_part=2)
        written[subset] = {}
        for i in range(count):
            record = make_record(i)
            key = f"{subset}{i:03d}"
            video = encode_video(make_frames(i + 100 * SUBSETS.index(subset)), fps=FPS)
            writer.write(key, video, record)
            written[subset][key] = (video, record)
        shards = writer.finalize(shard_multiple=4)
        stats[subset] = {"samples": count, "shards": len(shards)}
    write_dataset_card(root, stats=stats)
    return root, written


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


def keys_of(dataset) -> list[str]:
    return [example["key"] for example in dataset]


# -- the builder --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("subset", SUBSETS)
def test_builder_streams_each_subset(ophvl_repo, cache_dir, subset):
    root, written = ophvl_repo
    ds = OphVL(config_name=subset, base_path=str(root), cache_dir=cache_dir).as_streaming_dataset(split="train")
    assert isinstance(ds, datasets.IterableDataset)
    assert ds.num_shards == (8 if subset == "clips" else 4)
    assert ds.features["video"] == datasets.Value("binary")
    examples = list(ds)
    assert sorted(example["key"] for example in examples) == sorted(written[subset])
    for example in examples:
        video, record = written[subset][example["key"]]
        assert example["video"] == video
        assert example["text"] == record_text(subset, record) and example["text"]
        assert example["video_id"] == record["video_id"]
        assert json.loads(example["metadata"]) == record
        assert example["shard"].startswith(f"{subset}/train-")
        if subset == "clips":
            assert (example["start"], example["end"]) == (record["start"], record["end"])
            assert example["duration"] == pytest.approx(record["end"] - record["start"])
            assert example["title"] is None
        else:
            assert (example["start"], example["duration"]) == (0.0, record["duration"])
            assert example["title"] == record["title"]


def test_builder_default_config_and_missing_data(ophvl_repo, cache_dir, tmp_path):
    root, _ = ophvl_repo
    assert OphVL(base_path=str(root), cache_dir=cache_dir).config.name == "clips"
    with pytest.raises(ValueError, match="not found"):
        OphVL(config_name="nope", base_path=str(root), cache_dir=cache_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no OphVL shards"):
        OphVL(config_name="clips", base_path=str(empty), cache_dir=cache_dir).as_streaming_dataset(split="train")


def test_plain_load_dataset_opens_the_same_folder(ophvl_repo, cache_dir):
    root, written = ophvl_repo
    assert set(datasets.get_dataset_config_names(str(root))) == set(SUBSETS)
    for subset in SUBSETS:
        ds = datasets.load_dataset(str(root), subset, split="train", streaming=True, cache_dir=cache_dir)
        # The webdataset builder types `mp4` as Video(), whose decoding needs torchcodec: read the raw bytes instead.
        examples = list(ds.decode(False))
        assert sorted(example["__key__"] for example in examples) == sorted(written[subset])
        for example in examples:
            video, record = written[subset][example["__key__"]]
            assert example["mp4"]["bytes"] == video
            assert example["json"] == record


def test_package_imports_without_optional_dependencies():
    code = "import sys, datasets_ophvl; assert not {'datasets', 'decord', 'av'} & set(sys.modules), sys.modules.keys()"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=600)


# -- decoded frames, collation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_load_ophvl_yields_sampled_frames(ophvl_repo, cache_dir, decoder):
    root, written = ophvl_repo
    processor = OphCLIPVideoProcessor(num_frames=4)
    examples = list(load_ophvl(root, "clips", processor=processor, decoder=decoder, cache_dir=cache_dir))
    assert sorted(example["key"] for example in examples) == sorted(written["clips"])
    for example in examples:
        video, record = written["clips"][example["key"]]
        frames = example["frames"]
        assert isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.shape == (4, SIZE, SIZE, 3)
        assert example["frame_indices"] == processor.sample_indices(NUM_FRAMES, FPS)
        assert example["video_fps"] == pytest.approx(FPS)
        # training samples the frames that inference (the processor decoding the same bytes) samples
        np.testing.assert_array_equal(frames, processor.decode(video))
        assert example["text"] == record["narration"] and example["video_id"] == record["video_id"]
        assert "video" not in example
    # num_frames and fps override the processor's sampling; whole videos work the same way
    example = next(iter(load_ophvl(root, "videos", processor=processor, num_frames=2, decoder=decoder,
                                   cache_dir=cache_dir)))
    assert example["frames"].shape == (2, SIZE, SIZE, 3) and example["text"].startswith("Surgery: phacoemulsification")
    video, _ = written["videos"][example["key"]]
    np.testing.assert_array_equal(example["frames"], processor.decode(video, num_frames=2))
    example = next(iter(load_ophvl(root, "clips", processor=processor, fps=4.0, decoder=decoder, cache_dir=cache_dir)))
    video, _ = written["clips"][example["key"]]
    assert example["frame_indices"] == processor.sample_indices(NUM_FRAMES, FPS, fps=4.0) == [0, 2, 3, 4]
    np.testing.assert_array_equal(example["frames"], processor.decode(video, fps=4.0))


def test_decoders_agree_on_odd_sizes_and_long_gops():
    """decord and the selective PyAV decoder give identical frames, including where decord needs its fallback."""
    from datasets_ophvl.streaming import decode_sampled_frames

    processor = OphCLIPVideoProcessor(num_frames=5)
    for (height, width, frames) in [(24, 24, 7), (30, 46, 40), (36, 64, 90)]:  # 24 px wide: decord's copy bug
        video = encode_video(make_frames(height * width, num_frames=frames, height=height, width=width), fps=25)
        decoded = {decoder: decode_sampled_frames(video, processor, decoder=decoder) for decoder in ("decord", "pyav")}
        (a, indices_a, fps_a), (b, indices_b, fps_b) = decoded.values()
        assert indices_a == indices_b == processor.sample_indices(frames, 25) and fps_a == fps_b == 25
        assert a.shape == (5, height, width, 3)
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unknown decoder"):
        load_ophvl(".", decoder="opencv")


def test_load_ophvl_accepts_a_repo_id_path():
    from datasets_ophvl.streaming import resolve_path

    assert resolve_path("tester/ophvl") == "hf://datasets/tester/ophvl"
    assert resolve_path("tester/ophvl@v1") == "hf://datasets/tester/ophvl@v1"
    assert resolve_path("hf://datasets/a/b") == "hf://datasets/a/b"
    assert resolve_path(".") == os.path.abspath(".")


def test_collator_builds_model_inputs(ophvl_repo, cache_dir):
    root, _ = ophvl_repo
    processor = tiny_processor(size=SIZE)
    ds = load_ophvl(root, "clips", processor=processor, cache_dir=cache_dir)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=OphVLCollator(processor))
    batch = next(iter(loader))
    assert {"input_ids", "attention_mask", "pixel_values_videos", "frame_mask"} <= set(batch)
    assert batch["pixel_values_videos"].shape == (3, 4, 3, SIZE, SIZE)
    assert batch["frame_mask"].tolist() == [[1] * 4] * 3
    assert batch["input_ids"].shape[0] == 3 and batch["attention_mask"].shape == batch["input_ids"].shape
    model = OphCLIPModel(OphCLIPModelTester(num_frames=4, image_size=SIZE).get_config()).eval()
    with torch.no_grad():
        outputs = model(**batch, return_loss=True)
    assert outputs.logits_per_video.shape == (3, 3) and torch.isfinite(outputs.loss)
    with pytest.raises(TypeError, match="OphCLIPProcessor"):
        OphVLCollator(processor.video_processor)


# -- shuffling, epochs, resuming ----------------------------------------------------------------------------------

def test_shuffle_and_set_epoch_are_deterministic(ophvl_repo, cache_dir):
    root, written = ophvl_repo

    def order(seed, epoch):
        ds = load_ophvl(root, "clips", num_frames=1, shuffle_buffer=4, seed=seed, cache_dir=cache_dir)
        ds.set_epoch(epoch)
        return keys_of(ds)

    epoch0, epoch1 = order(seed=1, epoch=0), order(seed=1, epoch=1)
    assert sorted(epoch0) == sorted(epoch1) == sorted(written["clips"])
    assert epoch0 == order(seed=1, epoch=0) and epoch1 == order(seed=1, epoch=1)  # same seed + epoch, same order
    assert epoch0 != epoch1  # a new epoch reshuffles
    assert order(seed=2, epoch=0) != epoch0  # another seed, another order
    unshuffled = keys_of(load_ophvl(root, "clips", num_frames=1, cache_dir=cache_dir))
    assert unshuffled == sorted(written["clips"])  # no shuffle: shard order, then order within shards


@pytest.mark.parametrize("epoch", [0, 1])
def test_resume_mid_epoch_yields_exactly_the_remaining_examples(ophvl_repo, cache_dir, epoch):
    root, _ = ophvl_repo

    def fresh():
        ds = load_ophvl(root, "clips", num_frames=1, seed=3, cache_dir=cache_dir)  # shard order shuffled, no buffer
        ds.set_epoch(epoch)
        return ds

    full = keys_of(fresh())
    for stop in (1, 5, 8):  # inside a shard and at a shard boundary
        ds, seen = fresh(), []
        for example in ds:
            seen.append(example["key"])
            if len(seen) == stop:
                state = ds.state_dict()
                break
        resumed = fresh()
        resumed.load_state_dict(state)
        assert seen + keys_of(resumed) == full


def test_resume_with_a_shuffle_buffer_never_repeats(ophvl_repo, cache_dir):
    root, written = ophvl_repo
    buffer = 4
    ds, seen = load_ophvl(root, "clips", num_frames=1, shuffle_buffer=buffer, seed=5, cache_dir=cache_dir), []
    for example in ds:
        seen.append(example["key"])
        if len(seen) == 6:
            state = ds.state_dict()
            break
    resumed = load_ophvl(root, "clips", num_frames=1, shuffle_buffer=buffer, seed=5, cache_dir=cache_dir)
    resumed.load_state_dict(state)
    rest = keys_of(resumed)
    # datasets does not save the buffer's content: what it held is lost for this epoch, nothing is repeated
    assert not set(seen) & set(rest) and len(set(rest)) == len(rest)
    assert NUM_CLIPS - buffer <= len(seen) + len(rest) <= NUM_CLIPS


# -- sharding across processes and DataLoader workers -------------------------------------------------------------

_DISTRIBUTED_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration
    from torch.utils.data import DataLoader
    from datasets_ophvl import OphVLCollator, load_ophvl
    from ophclip_testing import tiny_processor

    root, out_dir, cache_dir = sys.argv[1:4]
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(dispatch_batches=False))
    processor = tiny_processor(size=32)
    collator = OphVLCollator(processor)

    def collate(examples):
        batch = collator(examples)
        worker = torch.utils.data.get_worker_info().id
        return {"keys": [e["key"] for e in examples], "workers": [worker] * len(examples),
                "pixel_values_videos": batch["pixel_values_videos"]}

    ds = load_ophvl(root, "clips", processor=processor, shuffle_buffer=4, seed=11, cache_dir=cache_dir)
    loader = accelerator.prepare(DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate))
    seen = {}
    for epoch in range(2):
        loader.set_epoch(epoch)
        keys, workers = [], []
        for batch in loader:
            assert tuple(batch["pixel_values_videos"].shape[1:]) == (4, 3, 32, 32)
            keys += batch["keys"]
            workers += batch["workers"]
        seen[epoch] = {"keys": keys, "workers": workers}
    with open(f"{out_dir}/rank{accelerator.process_index}.json", "w") as f:
        json.dump({"world": accelerator.num_processes, "type": str(accelerator.distributed_type), "seen": seen}, f)
""")


def test_each_example_once_per_epoch_across_processes_and_workers(ophvl_repo, tmp_path):
    root, written = ophvl_repo
    script = tmp_path / "read_ophvl.py"
    script.write_text(_DISTRIBUTED_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(script), str(root), str(tmp_path), str(tmp_path / "cache")]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert all(r["world"] == 2 and "MULTI_CPU" in r["type"] for r in ranks)
    for epoch in ("0", "1"):
        per_rank = [r["seen"][epoch]["keys"] for r in ranks]
        union = per_rank[0] + per_rank[1]
        assert sorted(union) == sorted(written["clips"]), per_rank  # every example once: no loss, no duplicate
        assert [len(keys) for keys in per_rank] == [NUM_CLIPS // 2] * 2
        assert all(set(r["seen"][epoch]["workers"]) == {0, 1} for r in ranks)  # both workers of each rank read
    assert [r["seen"]["0"]["keys"] for r in ranks] != [r["seen"]["1"]["keys"] for r in ranks]  # epochs reshuffle


# -- the hf:// code path ------------------------------------------------------------------------------------------

@pytest.fixture
def fake_hf_filesystem(tmp_path, ophvl_repo):
    """Serve `hf://datasets/tester/ophvl/...` from a local copy through fsspec (no Hub, no HTTP).

    The builder then takes its real `hf://` route: `xglob`/`xjoin` with Hub storage options, `xopen` of each shard.
    A loopback HTTP fake Hub (a later issue) also exercises huggingface_hub's HfFileSystem underneath.
    """
    import fsspec
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem
    from fsspec.registry import _registry

    hub_root = tmp_path / "hub"
    shutil.copytree(ophvl_repo[0], hub_root / "datasets" / "tester" / "ophvl")
    opened = []

    class LocalHfFileSystem(DirFileSystem):
        protocol = "hf"
        cachable = False

        def __init__(self, *args, endpoint=None, token=None, **kwargs):
            super().__init__(path=str(hub_root), fs=LocalFileSystem())

        def open(self, path, *args, **kwargs):
            opened.append(path)
            return super().open(path, *args, **kwargs)

    previous = _registry.get("hf")
    fsspec.register_implementation("hf", LocalHfFileSystem, clobber=True)
    try:
        yield opened
    finally:
        _registry.pop("hf", None)
        if previous is not None:
            _registry["hf"] = previous


def test_hf_base_path_streams_through_fsspec(fake_hf_filesystem, ophvl_repo, cache_dir):
    _, written = ophvl_repo
    builder = OphVL(config_name="clips", base_path="hf://datasets/tester/ophvl", cache_dir=cache_dir)
    generators = builder._split_generators(datasets.StreamingDownloadManager(base_path=builder.base_path))
    shards = generators[0].gen_kwargs["shards"]
    assert shards == [f"hf://datasets/tester/ophvl/data/clips/train-{i:05d}-of-00008.tar" for i in range(8)]
    assert sorted(keys_of(builder.as_streaming_dataset(split="train"))) == sorted(written["clips"])
    assert len(fake_hf_filesystem) == 8  # every shard was read through the hf:// filesystem
    example = next(iter(load_ophvl("tester/ophvl", "silent", num_frames=2, cache_dir=cache_dir)))
    assert example["frames"].shape == (2, SIZE, SIZE, 3) and example["key"] in written["silent"]


# -- bad input on the read side -----------------------------------------------------------------------------------

def _mp4_without_frames() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        container.start_encoding()  # header and trailer, no frame
    return buffer.getvalue()


def _mp4_audio_only() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def _mp4_with_lost_data(video: bytes) -> bytes:
    """An mp4 whose index and first frame are intact but whose later frame data was zeroed (a disk error)."""
    start, index = video.find(b"mdat") + 4, video.find(b"moov") - 4
    assert 0 < start < index
    start += (index - start) * 4 // 5
    return video[:start] + bytes(index - start) + video[index:]


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", kind=tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _clip_json(**overrides) -> bytes:
    return json.dumps({**clip_record(1), **overrides}).encode()


def _good(i: int) -> tuple[bytes, bytes]:
    return encode_video(make_frames(i), fps=FPS), json.dumps(clip_record(i)).encode()


@pytest.fixture
def bad_repo(tmp_path):
    """Two shards mixing good samples with every kind of bad input, plus a truncated shard and a non-tar shard."""
    root = tmp_path / "bad"
    shard_dir = root / "data" / "clips"
    shard_dir.mkdir(parents=True)
    good_video, _ = _good(0)
    evil_abs = f"/tmp/ophvl-evil-{uuid.uuid4().hex}.mp4"
    bad = {  # key -> (mp4 bytes or None, json bytes or None): expected reason
        "malformed": ((good_video, b"{not json"), "malformed_json"),
        "notutf8": ((good_video, b"\xff\xfe{}"), "malformed_json"),
        "nested": ((good_video, b"[" * 100_000 + b"]" * 100_000), "malformed_json"),
        "hugejson": ((good_video, b" " * (2 << 20) + b"{}"), "oversized_json"),
        "nofields": ((good_video, json.dumps({"narration": "text only"}).encode()), "invalid_record"),
        "emptytext": ((good_video, _clip_json(narration="  ")), "invalid_record"),
        "longtext": ((good_video, _clip_json(narration="lens " * 2000)), "invalid_record"),
        "endbeforestart": ((good_video, _clip_json(start=5.0, end=2.0)), "invalid_record"),
        "corrupt": ((np.random.default_rng(0).bytes(3000), None), "undecodable_video"),
        "truncated": ((good_video[: len(good_video) // 2], None), "undecodable_video"),
        "lostdata": ((_mp4_with_lost_data(good_video), None), "corrupt_video"),
        "zeroframes": ((_mp4_without_frames(), None), "no_video_stream"),
        "audioonly": ((_mp4_audio_only(), None), "no_video_stream"),
        "emptymp4": ((b"", None), "empty_video"),
        "nojson": ((good_video, False), "missing_json"),
        "nomp4": ((False, None), "missing_mp4"),
    }
    expected = {}
    with tarfile.open(shard_dir / "train-00000-of-00003.tar", "w") as tar:
        for i, (key, ((video, record), reason)) in enumerate(bad.items()):
            if i % 4 == 0:  # good samples in between the bad ones
                video_i, record_i = _good(10 + i)
                _add(tar, f"good{i}.mp4", video_i)
                _add(tar, f"good{i}.json", record_i)
            if record is not False:
                _add(tar, f"{key}.json", record or json.dumps({**clip_record(i), "video_id": key}).encode())
            if video is not False:
                _add(tar, f"{key}.mp4", video)
            expected[reason] = expected.get(reason, 0) + 1
        _add(tar, "../evil.json", b"{}")
        _add(tar, evil_abs, good_video)
        # datasets' archive iteration never hands over links, directories or hidden files: not part of any sample,
        # so a sample whose mp4 is a link arrives without one (D11: the plain path gave `mp4=None`)
        _add(tar, "somedir", kind=tarfile.DIRTYPE)
        _add(tar, "link.json", json.dumps({**clip_record(4), "video_id": "link"}).encode())
        _add(tar, "link.mp4", kind=tarfile.SYMTYPE, link="/etc/passwd")
        _add(tar, "._good0.mp4", b"resource fork")
        _add(tar, "sub/inner.mp4", good_video)
        _add(tar, "dup.mp4", good_video)
        _add(tar, "dup.mp4", good_video)
        _add(tar, "dup.json", json.dumps(clip_record(2)).encode())
        _add(tar, "good0.json", json.dumps(clip_record(3)).encode())  # a key seen earlier in this shard
        _add(tar, "good0.mp4", good_video)
        video_i, record_i = _good(99)
        _add(tar, "goodlast.mp4", video_i)
        _add(tar, "goodlast.json", record_i)
    expected.update({"unsafe_member_path": 2, "bad_member_name": 1, "duplicate_member": 1, "duplicate_key": 1})
    expected["missing_mp4"] += 1  # link
    # a shard cut short: the sample before the cut comes through, the one cut is lost
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for key in ("cutgood", "cutlost"):
            video_i, record_i = _good(50)
            _add(tar, f"{key}.json", record_i)
            _add(tar, f"{key}.mp4", video_i)
    data = buffer.getvalue()
    (shard_dir / "train-00001-of-00003.tar").write_bytes(data[: data.rfind(b"cutlost.mp4") + 1024])
    (shard_dir / "train-00002-of-00003.tar").write_bytes(b"this is not a tar archive" * 50)
    expected["missing_mp4"] += 1
    expected["unreadable_shard"] = 2
    good_keys = sorted([f"good{i}" for i in range(0, len(bad), 4)] + ["goodlast", "cutgood"])
    outside = [tmp_path / "evil.json", root / "evil.json", root / "data" / "evil.json", Path(evil_abs)]
    return root, good_keys, expected, outside


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_bad_samples_are_skipped_counted_and_reported(bad_repo, cache_dir, caplog, decoder):
    root, good_keys, expected, outside = bad_repo
    skip_counts.reset()
    with caplog.at_level(logging.WARNING, logger="datasets_ophvl"):
        examples = list(load_ophvl(root, "clips", num_frames=2, decoder=decoder, cache_dir=cache_dir))
    assert sorted(example["key"] for example in examples) == good_keys
    assert all(example["frames"].shape == (2, SIZE, SIZE, 3) for example in examples)
    assert skip_counts.as_dict() == expected
    assert skip_counts.total == sum(expected.values())
    log = caplog.text
    for reason in expected:
        assert f"({reason})" in log, reason
    assert "'emptytext'" in log and "empty or missing `narration`" in log  # the record's problem is said
    assert "skipped since the shard started" in log and "clips/train-00000-of-00003.tar" in log  # per-shard summary
    assert not any(path.exists() for path in outside)  # nothing was extracted anywhere


def test_raw_builder_skips_only_what_it_can_see(bad_repo, cache_dir):
    root, good_keys, expected, _ = bad_repo
    skip_counts.reset()
    ds = OphVL(config_name="clips", base_path=str(root), cache_dir=cache_dir).as_streaming_dataset(split="train")
    keys = keys_of(ds)
    decoding = {"undecodable_video", "corrupt_video", "no_video_stream", "zero_frames"}
    assert sorted(set(keys) - set(good_keys)) == sorted(["corrupt", "truncated", "lostdata", "zeroframes", "audioonly"])
    assert skip_counts.as_dict() == {reason: n for reason, n in expected.items() if reason not in decoding}


def test_every_reader_of_shards_keeps_and_skips_the_same_samples(tmp_path, cache_dir):
    """Issue 18 item 3 / issue 15 D11: the builder (`load_ophvl`), the trainer's silent-video scan and the retrieval
    protocol read shards through the one reader, so a hostile shard gives each the same samples and the same skips:
    a malformed json, a link in place of an mp4, a second mp4, an extra field (datasets' generic reader stops on
    mixed fields), and a shard cut inside a member."""
    from evaluate_suite.protocols.retrieval import find_shards, read_samples
    from ophclip_train.data import scan_silent_videos

    shard_dir = tmp_path / "data" / "silent"
    shard_dir.mkdir(parents=True)
    video = encode_video(make_frames(7), fps=FPS)

    def record(key):
        return json.dumps({**silent_record(0), "video_id": key}).encode()

    with tarfile.open(shard_dir / "train-00000-of-00002.tar", "w") as tar:
        for key in ("keep0", "malformed", "link", "twice", "extra", "keep1"):
            _add(tar, f"{key}.json", b"{oops" if key == "malformed" else record(key))
            if key == "link":
                _add(tar, "link.mp4", kind=tarfile.SYMTYPE, link="/etc/passwd")
                continue
            _add(tar, f"{key}.mp4", video)
            if key == "twice":
                _add(tar, "twice.mp4", video)
            if key == "extra":
                _add(tar, "extra.cls", b"3")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for key in ("keep2", "cut"):
            _add(tar, f"{key}.json", record(key))
            _add(tar, f"{key}.mp4", video)
    data = buffer.getvalue()
    (shard_dir / "train-00001-of-00002.tar").write_bytes(data[: data.rfind(b"cut.mp4") + 1024])
    kept = ["keep0", "extra", "keep1", "keep2"]
    skipped = {"malformed": "malformed_json", "link": "missing_mp4", "twice": "duplicate_member",
               "cut": "missing_mp4", "train-00001-of-00002.tar": "unreadable_shard"}

    skip_counts.reset()
    builder = OphVL(config_name="silent", base_path=str(tmp_path), cache_dir=cache_dir)
    assert keys_of(builder.as_streaming_dataset(split="train")) == kept
    counts = skip_counts.as_dict()
    skip_counts.reset()
    assert scan_silent_videos(str(tmp_path))["video_id"] == kept
    assert skip_counts.as_dict() == counts == {"malformed_json": 1, "missing_mp4": 2, "duplicate_member": 1,
                                               "unreadable_shard": 1}
    samples, why = read_samples(find_shards(tmp_path, "silent"), "silent", max_clips=None)
    assert [key for key, _, _ in samples] == kept
    assert {name: reason.split(":")[0] for name, reason in why.items()} == skipped


def test_whole_shard_reads_refuse_what_others_skip(tmp_path):
    """The shard writer re-packs its own parts with the same reader, but a broken sample there is an error naming
    it, never a skip: a skip would drop the sample from the dataset without a trace."""
    from datasets_ophvl.reader import BrokenShardError
    from datasets_ophvl.shards import read_whole_shard

    part = tmp_path / "part-00000.tar"
    with tarfile.open(part, "w") as tar:
        _add(tar, "a.json", b"{}")
        _add(tar, "a.mp4", b"video")
        _add(tar, "a.mp4", b"again")
    with pytest.raises(BrokenShardError, match=r"cannot read sample 'a' in .*part-00000.tar \(duplicate_member\)"):
        list(read_whole_shard(part))


def test_skip_counter_limits_warnings(caplog):
    from datasets_ophvl.reader import SkipCounter

    counter = SkipCounter(max_warnings_per_reason=2)
    with caplog.at_level(logging.DEBUG, logger="datasets_ophvl"):
        for i in range(5):
            counter.add("malformed_json", "bad", key=f"k{i}", source="clips/x.tar")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "logged at debug level" in warnings[-1].getMessage()
    assert counter["malformed_json"] == 5 and counter.as_dict() == {"malformed_json": 5}


# -- frame-size cap (issue 15, D9) -----------------------------------------------------------------------------------


def _huge_frame_video(size: int = 8192, container_format: str = "mp4", frames: int = 1) -> bytes:
    """A small file (~200 KB) holding `frames` black `size` x `size` frames: 200 MB per frame once decoded to RGB."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width = stream.height = size
        stream.pix_fmt, stream.options = "yuv420p", {"preset": "ultrafast"}
        frame = av.VideoFrame(size, size, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for i in range(frames):
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def huge_frame_mp4() -> bytes:
    return _huge_frame_video()


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_huge_frames_are_refused_before_decoding(huge_frame_mp4, monkeypatch, decoder):
    """D9: a ~200 KB mp4 with one 8192x8192 frame decoded to 200 MB per sampled frame (1.5 GiB for 8). Its size is
    read from the header and the video refused before any decoder runs."""
    from datasets_ophvl import streaming
    from datasets_ophvl.media import MAX_FRAME_PIXELS, video_frame_size
    from datasets_ophvl.streaming import VideoDecodeError, decode_sampled_frames

    assert len(huge_frame_mp4) < 1_000_000 and video_frame_size(huge_frame_mp4) == (8192, 8192)
    monkeypatch.delenv("OPHVL_MAX_FRAME_PIXELS", raising=False)

    def must_not_decode(*args, **kwargs):
        raise AssertionError("the video was decoded")

    monkeypatch.setattr(streaming, "_decode_decord", must_not_decode)
    monkeypatch.setattr(streaming, "_decode_pyav", must_not_decode)
    with pytest.raises(VideoDecodeError) as error:
        decode_sampled_frames(huge_frame_mp4, OphCLIPVideoProcessor(num_frames=1), decoder=decoder)
    assert error.value.reason == "oversized_frame"
    assert f"8192x8192 frames (67108864 pixels) exceed max_pixels={MAX_FRAME_PIXELS}" in error.value.detail
    # Another container than mp4 is sized through PyAV (which decodes at most one frame to tell).
    mkv = _huge_frame_video(4608, "matroska")
    with pytest.raises(VideoDecodeError, match="4608x4608 frames"):
        decode_sampled_frames(mkv, OphCLIPVideoProcessor(num_frames=1), decoder=decoder)


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_frame_size_cap_is_configurable(monkeypatch, decoder):
    from datasets_ophvl.streaming import VideoDecodeError, decode_sampled_frames

    video = encode_video(make_frames(1, height=24, width=40), fps=FPS)
    processor = OphCLIPVideoProcessor(num_frames=2)
    monkeypatch.delenv("OPHVL_MAX_FRAME_PIXELS", raising=False)
    assert decode_sampled_frames(video, processor, decoder=decoder, max_pixels=40 * 24)[0].shape == (2, 24, 40, 3)
    with pytest.raises(VideoDecodeError, match=r"40x24 frames \(960 pixels\) exceed max_pixels=959"):
        decode_sampled_frames(video, processor, decoder=decoder, max_pixels=959)
    monkeypatch.setenv("OPHVL_MAX_FRAME_PIXELS", "500")
    with pytest.raises(VideoDecodeError, match="max_pixels=500"):
        decode_sampled_frames(video, processor, decoder=decoder)
    assert decode_sampled_frames(video, processor, decoder=decoder, max_pixels=960)[0].shape == (2, 24, 40, 3)
    monkeypatch.setenv("OPHVL_MAX_FRAME_PIXELS", "lots")
    with pytest.raises(ValueError, match="OPHVL_MAX_FRAME_PIXELS='lots'; expected a positive whole number"):
        decode_sampled_frames(video, processor, decoder=decoder)


def test_oversized_frames_are_counted_skips_in_a_stream(ophvl_repo, cache_dir, monkeypatch, caplog):
    """In `load_ophvl` a video above the cap is a counted skip named by key and shard; the stream goes on."""
    root, written = ophvl_repo
    monkeypatch.setenv("OPHVL_MAX_FRAME_PIXELS", str(SIZE * SIZE - 1))
    skip_counts.reset()
    with caplog.at_level(logging.WARNING, logger="datasets_ophvl"):
        assert list(load_ophvl(root, "silent", num_frames=2, cache_dir=cache_dir)) == []
    assert skip_counts.as_dict() == {"oversized_frame": len(written["silent"])}
    assert "sample 'silent000' in silent/train-" in caplog.text and "(oversized_frame): 32x32 frames" in caplog.text
