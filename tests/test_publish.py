"""Publishing through the real huggingface_hub client against the loopback fake Hub (tests/fake_hub.py): the folder
that is uploaded is the folder whose reload is tested, in a fresh process that cannot import the project."""

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError

from model_cards import PublishError, build_dataset_card, build_model_card, folder_stats, publish_dataset, publish_model
from model_cards.publish import main as publish_main
from model_cards.publish import validate_model_folder
from modeling_ophclip import OphCLIPModel
from ophclip_testing import OphCLIPModelTester, tiny_processor
from remote_code import REPO_ROOT, run_without_project


MODEL_ID = "tester/ophclip-tiny"
DATASET_ID = "tester/ophvl-mini"
PROMPTS = ["the surgeon makes the main incision", "phaco emulsification of the lens", "lens implant injection"]


def _records():
    from evaluate_suite.leaderboard import EvalRecord

    return [
        EvalRecord(MODEL_ID, "0123456789abcdef", "cataract-101-mini", "zero-shot", {"accuracy": 0.5312, "f1": 0.4171},
                   date="2025-01-01T00:00:00+00:00", extra={"split": "test"}),
        EvalRecord(MODEL_ID, "0123456789abcdef", "cadis-mini", "zero-shot", {"mAP": 0.25, "FPR": 0.5},
                   date="2025-01-01T00:00:00+00:00", extra={"split": "test"}),
    ]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny OphCLIP model + processor + remote code + card + .eval_results, as a run would leave it."""
    from evaluate_suite.leaderboard import published_metrics
    from model_cards import model_index, write_eval_results

    folder = tmp_path_factory.mktemp("publish") / "final"
    torch.manual_seed(0)
    OphCLIPModel(OphCLIPModelTester().get_config()).save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    rows = published_metrics(_records(), MODEL_ID)
    write_eval_results(folder, rows)
    build_model_card(folder, model_id=MODEL_ID, data_stats={"clips": {"samples": 26}},
                     eval_results=model_index(rows)).save(folder / "README.md")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "stale.pyc").write_bytes(b"\0")  # never uploaded
    return folder


@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory):
    pytest.importorskip("av")
    from datasets_ophvl import generate_ophvl_mini

    root = tmp_path_factory.mktemp("publish_data") / "ophvl-mini"
    summary = generate_ophvl_mini(root, size="tiny", progress=False)
    build_dataset_card(folder_stats(root), repo_id=DATASET_ID, pretty_name="OphVL-mini (synthetic)",
                       license="apache-2.0", privacy="Synthetic.").save(root / "README.md")
    return root, summary


def _uploadable(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.name not in (".ophvl-manifest.json", ".ophvl-mini.json")}


def _cli(args, env, check_rc=None):
    """Run `python -m model_cards.publish ...` in a child process pointed at the fake Hub."""
    result = subprocess.run([sys.executable, "-m", "model_cards.publish", *map(str, args)], cwd=REPO_ROOT,
                            env={**_base_env(), **env}, capture_output=True, text=True, timeout=600)
    if check_rc is not None:
        assert result.returncode == check_rc, result.stdout + result.stderr
    return result


def _base_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("HF_")}


# ---------------------------------------------------------------------------------------------------------------------


def test_publish_model_and_load_it_in_a_fresh_process(fake_hub, model_folder, tmp_path):
    endpoint, env, hub = fake_hub
    out = io.StringIO()
    result = publish_model(model_folder, MODEL_ID, commit_message="OphCLIP tiny", out=out)
    assert result.commit_oid and result.commit_url.startswith(f"{endpoint}/{MODEL_ID}/commit/")
    assert "published" in out.getvalue()

    # One commit after the repository's initial one, holding exactly the folder's files.
    repo = hub.repo(MODEL_ID)
    assert [c["title"] for c in repo["commits"]] == ["initial commit", "OphCLIP tiny"]
    stored = hub.files(MODEL_ID)
    expected = _uploadable(model_folder)
    assert set(stored) == expected | {".gitattributes"}
    assert {"config.json", "model.safetensors", "README.md", "processor_config.json", "modeling_ophclip.py",
            "configuration_ophclip.py", "processing_ophclip.py", "video_processing_ophclip.py",
            ".eval_results/cataract-101-mini.yaml", ".eval_results/cadis-mini.yaml"} <= expected
    assert all(stored[p] == (model_folder / p).read_bytes() for p in expected)

    # A fresh process without the project loads model and processor from the Hub id (remote code) ...
    child = run_without_project(f"""
        import numpy as np, torch
        from transformers import AutoModel, AutoProcessor
        model = AutoModel.from_pretrained({MODEL_ID!r}, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained({MODEL_ID!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        video = np.random.default_rng(0).integers(0, 256, (2, 6, 40, 48, 3), dtype=np.uint8)
        inputs = processor(text={PROMPTS!r}, videos=list(video))
        with torch.no_grad():
            out = model(**inputs)
        np.save("logits.npy", out.logits_per_video.numpy())
        np.save("pixels.npy", inputs["pixel_values_videos"].numpy())
        np.save("ids.npy", inputs["input_ids"].numpy())
    """, tmp_path, env_extra=env)
    assert "Traceback" not in child.stderr

    # ... and gets what the local folder gives.
    model = OphCLIPModel.from_pretrained(model_folder).eval()
    video = np.random.default_rng(0).integers(0, 256, (2, 6, 40, 48, 3), dtype=np.uint8)
    inputs = tiny_processor()(text=PROMPTS, videos=list(video))
    with torch.no_grad():
        logits = model(**inputs).logits_per_video.numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "ids.npy"), inputs["input_ids"].numpy())
    np.testing.assert_array_equal(np.load(tmp_path / "pixels.npy"), inputs["pixel_values_videos"].numpy())
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), logits, rtol=0, atol=1e-6)


def test_evaluation_results_read_back_from_the_hub(fake_hub, model_folder):
    from evaluate_suite.leaderboard import published_metrics
    from huggingface_hub import parse_eval_result_entries
    from model_cards import eval_result_entries, model_index

    publish_model(model_folder, MODEL_ID, out=io.StringIO())
    files = HfApi().list_repo_files(MODEL_ID)
    yamls = sorted(f for f in files if f.startswith(".eval_results/"))
    assert yamls == [".eval_results/cadis-mini.yaml", ".eval_results/cataract-101-mini.yaml"]
    entries = []
    for name in yamls:
        with open(hf_hub_download(MODEL_ID, name)) as f:
            entries += parse_eval_result_entries(yaml.safe_load(f))
    key = lambda e: (e.dataset_id, e.task_id)  # noqa: E731
    assert sorted(entries, key=key) == sorted(eval_result_entries(published_metrics(_records(), MODEL_ID)), key=key)

    card = ModelCard.load(MODEL_ID)  # the README's model-index, through the Hub
    assert card.data.eval_results == model_index(published_metrics(_records(), MODEL_ID))
    assert {r.metric_value for r in card.data.eval_results} == {53.12, 41.71, 25.0, 50.0}


def test_publish_dataset_and_stream_it_back(fake_hub, dataset_folder):
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("decord")
    from datasets_ophvl import load_ophvl

    endpoint, env, hub = fake_hub
    root, summary = dataset_folder
    publish_dataset(root, DATASET_ID, out=io.StringIO())
    stored = hub.files(DATASET_ID, repo_type="dataset")
    assert set(stored) == _uploadable(root) | {".gitattributes"}
    assert not any(p.endswith((".ophvl-manifest.json", ".ophvl-mini.json")) for p in stored)
    assert len(hub.repo(DATASET_ID, "dataset")["commits"]) == 2

    clips = list(load_ophvl(DATASET_ID, "clips", num_frames=4))
    assert len(clips) == summary["clips"]["samples"]
    assert clips[0]["frames"].shape == (4, 64, 64, 3) and clips[0]["text"]

    rows = list(datasets.load_dataset(DATASET_ID, "clips", split="train", streaming=True).decode(False))
    assert len(rows) == summary["clips"]["samples"]
    assert rows[0]["json"]["narration"] and rows[0]["mp4"]["bytes"][4:8] == b"ftyp"
    assert {r["__key__"] for r in rows} == {c["key"] for c in clips}
    assert any("/resolve/" in path and "data/clips/" in path for _, path, _ in hub.requests)


def test_dry_run_prints_the_plan_and_sends_nothing(fake_hub, model_folder, dataset_folder):
    endpoint, env, hub = fake_hub
    out = io.StringIO()
    result = publish_model(model_folder, MODEL_ID, dry_run=True, out=out)
    text = out.getvalue()
    assert result.dry_run and result.commit_oid is None
    for path in _uploadable(model_folder):
        size = (model_folder / path).stat().st_size
        assert any(line.split() == [path, f"{size:,d}", "B"] for line in text.splitlines()), path
    assert "left out: __pycache__/stale.pyc" in text and f"{endpoint}/{MODEL_ID}" in text

    # The command line: the dataset's bookkeeping files are left out of the plan.
    root, _ = dataset_folder
    cli = _cli(["dataset", root, DATASET_ID, "--dry-run", "--private"], env, check_rc=0)
    planned = [line.split()[0] for line in cli.stdout.splitlines() if line.startswith("  ")]
    assert set(planned) == _uploadable(root)
    assert "(private)" in cli.stdout and ".ophvl-mini.json" in cli.stdout.splitlines()[-1]
    assert hub.requests == [] and hub.repo(MODEL_ID) is None and hub.repo(DATASET_ID, "dataset") is None


def test_server_error_on_commit_is_one_clear_line_and_publishes_nothing(fake_hub, model_folder):
    endpoint, env, hub = fake_hub
    hub.fail("commit", status=500)
    with pytest.raises(PublishError) as caught:
        publish_model(model_folder, MODEL_ID, out=io.StringIO())
    message = str(caught.value)
    assert "\n" not in message and "HTTP 500" in message and "nothing was published" in message
    assert caught.value.exit_code == 1
    assert [c["title"] for c in hub.repo(MODEL_ID)["commits"]] == ["initial commit"]  # created, no commit
    assert set(hub.files(MODEL_ID)) == {".gitattributes"}

    cli = _cli(["model", model_folder, MODEL_ID], env, check_rc=1)
    assert cli.stderr.strip().count("\n") == 0 and cli.stderr.startswith("error: could not commit")
    assert set(hub.files(MODEL_ID)) == {".gitattributes"}

    hub.clear_failures()
    cli = _cli(["model", model_folder, MODEL_ID], env, check_rc=0)
    assert "published" in cli.stdout and "README.md" in hub.files(MODEL_ID)


def test_authentication_and_network_failures(fake_hub, model_folder):
    endpoint, env, hub = fake_hub
    with pytest.raises(PublishError, match=r"HTTP 401 \(authentication failed") as caught:
        publish_model(model_folder, MODEL_ID, token="hf_wrong", out=io.StringIO())
    assert "could not create" in str(caught.value) and hub.repo(MODEL_ID) is None

    with pytest.raises(PublishError, match="could not create .* ConnectError"):
        publish_model(model_folder, MODEL_ID, endpoint="http://127.0.0.1:9", out=io.StringIO())


def test_invalid_folders_are_refused_before_any_request(fake_hub, model_folder, tmp_path, capsys):
    endpoint, env, hub = fake_hub
    bare = tmp_path / "bare"
    OphCLIPModel(OphCLIPModelTester().get_config()).save_pretrained(bare)
    with pytest.raises(PublishError, match="no model card") as caught:
        publish_model(bare, MODEL_ID, out=io.StringIO())
    assert caught.value.exit_code == 2

    (bare / "README.md").write_text((model_folder / "README.md").read_text())
    (bare / "modeling_ophclip.py").unlink()
    with pytest.raises(PublishError, match="modeling_ophclip.py"):
        publish_model(bare, MODEL_ID, out=io.StringIO())

    (bare / "config.json").write_text("{not json")
    assert publish_main(["model", str(bare), MODEL_ID]) == 2
    assert "config.json does not load: JSONDecodeError" in capsys.readouterr().err

    for name in ("config.json", "modeling_ophclip.py"):
        (bare / name).write_bytes((model_folder / name).read_bytes())
    (bare / ".eval_results").mkdir()
    (bare / ".eval_results" / "x.yaml").write_text("- value: 1\n")
    with pytest.raises(PublishError, match="x.yaml is not a list of evaluation results"):
        publish_model(bare, MODEL_ID, out=io.StringIO())

    data = tmp_path / "data"
    (data / "data" / "clips").mkdir(parents=True)
    (data / "README.md").write_text("---\nlicense: other\n---\n# no configs\n")
    with pytest.raises(PublishError, match="no configs"):
        publish_dataset(data, DATASET_ID, out=io.StringIO())
    build_dataset_card({}, repo_id=DATASET_ID).save(data / "README.md")
    with pytest.raises(PublishError, match="no data files match the configs clips, videos, silent"):
        publish_dataset(data, DATASET_ID, out=io.StringIO())
    (data / "data" / "clips" / "part-00000.tar").write_bytes(b"")
    with pytest.raises(PublishError, match="unfinished build"):
        publish_dataset(data, DATASET_ID, out=io.StringIO())
    with pytest.raises(PublishError, match="invalid repository id"):
        publish_dataset(data, "tester/bad name", out=io.StringIO())
    assert hub.requests == []


def test_model_folder_without_weights_is_refused(fake_hub, model_folder, tmp_path, capsys):
    """D1: config, remote code, processor and card but no weights: refused, naming the folder and the weight files
    expected, even as a dry run."""
    endpoint, env, hub = fake_hub
    folder = tmp_path / "no-weights"
    shutil.copytree(model_folder, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.pt"))
    assert (folder / "config.json").is_file() and (folder / "modeling_ophclip.py").is_file()
    with pytest.raises(PublishError) as caught:
        publish_model(folder, MODEL_ID, dry_run=True, out=io.StringIO())
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in message
    assert f"{folder} has no weights" in message and "model.safetensors" in message
    assert publish_main(["model", str(folder), MODEL_ID, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "has no weights" in captured.err
    # A folder whose only "weights" is a sub-folder named like them is no better.
    (folder / "model.safetensors").mkdir()
    with pytest.raises(PublishError, match="has no weights"):
        publish_model(folder, MODEL_ID, dry_run=True, out=io.StringIO())
    assert hub.requests == []


def _shard_folder(root, counts: dict[str, int]):
    """A dataset folder with an OphVL card and empty shard files `train-NNNNN-of-TTTTT.tar` (validation reads names)."""
    for subset, total in counts.items():
        (root / "data" / subset).mkdir(parents=True, exist_ok=True)
        for i in range(total):
            (root / "data" / subset / f"train-{i:05d}-of-{total:05d}.tar").write_bytes(b"")
    build_dataset_card({}, repo_id=DATASET_ID).save(root / "README.md")
    return root


def test_dataset_with_incomplete_or_mixed_shard_sets_is_refused(fake_hub, tmp_path, capsys):
    """D12: a missing `train-00001-of-00004.tar`, or a set of 120 mixed with the leftovers of a set of 126, is
    refused with the files named; a complete set passes."""
    endpoint, env, hub = fake_hub
    root = _shard_folder(tmp_path / "ds", {"clips": 4, "videos": 2, "silent": 2})
    assert publish_dataset(root, DATASET_ID, dry_run=True, out=io.StringIO()).dry_run

    (root / "data" / "clips" / "train-00001-of-00004.tar").unlink()
    with pytest.raises(PublishError) as caught:
        publish_dataset(root, DATASET_ID, dry_run=True, out=io.StringIO())
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in message
    assert "config clips" in message and "missing data/clips/train-00001-of-00004.tar" in message
    assert publish_main(["dataset", str(root), DATASET_ID, "--dry-run"]) == 2
    assert "train-00001-of-00004.tar" in capsys.readouterr().err

    mixed = _shard_folder(tmp_path / "mixed", {"clips": 120, "videos": 2, "silent": 2})
    for i in range(120, 126):  # what a finalize with another shard count left behind
        (mixed / "data" / "clips" / f"train-{i:05d}-of-00126.tar").write_bytes(b"")
    with pytest.raises(PublishError) as caught:
        publish_dataset(mixed, DATASET_ID, dry_run=True, out=io.StringIO())
    message = str(caught.value)
    assert "mixes shard sets of different sizes (-of-00120, -of-00126)" in message
    assert "data/clips/train-00120-of-00126.tar" in message and "-of-00120.tar" not in message
    assert hub.requests == []


def test_republishing_the_same_folder_adds_no_commit_and_private_repos_stay_hidden(fake_hub, model_folder):
    endpoint, env, hub = fake_hub
    first = publish_model(model_folder, MODEL_ID, private=True, out=io.StringIO())
    second = publish_model(model_folder, MODEL_ID, private=True, out=io.StringIO())
    assert second.commit_oid == first.commit_oid and len(hub.repo(MODEL_ID)["commits"]) == 2
    assert hub.repo(MODEL_ID)["private"] is True
    assert HfApi().model_info(MODEL_ID).sha == first.commit_oid
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info(MODEL_ID)


class _ManualTimer:
    """Stands for `threading.Timer` in the fake Hub: records the delay and fires only when the test says so, so the
    time to live is tested without waiting for a clock."""

    made: list["_ManualTimer"] = []

    def __init__(self, interval, function, args=(), kwargs=None):
        self.interval, self.function, self.args, self.kwargs = interval, function, args, kwargs or {}
        self.daemon, self.started, self.cancelled = False, False, False
        _ManualTimer.made.append(self)

    def start(self):
        self.started = True

    def cancel(self):
        self.cancelled = True

    def fire(self):
        """The interval is over: run the function, as the real timer's thread would (unless cancelled)."""
        assert self.started
        if not self.cancelled:
            self.function(*self.args, **self.kwargs)


def test_fake_hub_serves_byte_ranges_and_stops_by_itself(tmp_path, monkeypatch):
    import threading
    import types
    import urllib.error
    import urllib.request

    import fake_hub
    from fake_hub import FakeHub

    # The fake Hub's time to live runs on an injected timer that the test fires (no sleeping past a deadline).
    monkeypatch.setattr(fake_hub, "threading", types.SimpleNamespace(**{**vars(threading), "Timer": _ManualTimer}))
    _ManualTimer.made.clear()
    with FakeHub(tmp_path / "hub", ttl=1.0, quiet=True) as hub:
        [timer] = _ManualTimer.made
        assert timer.interval == 1.0 and timer.started and timer.daemon
        api = HfApi(endpoint=hub.endpoint, token="hf_fake")
        api.create_repo("tester/blob", repo_type="dataset")
        api.upload_file(path_or_fileobj=bytes(range(256)) * 4, path_in_repo="a/b.bin", repo_id="tester/blob",
                        repo_type="dataset")
        request = urllib.request.Request(hub.url("tester/blob", "a/b.bin", "dataset"), headers={"Range": "bytes=10-19"})
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 206 and response.read() == bytes(range(10, 20))
            assert response.headers["Content-Range"] == "bytes 10-19/1024" and response.headers["X-Repo-Commit"]
        assert [e.path for e in api.list_repo_tree("tester/blob", repo_type="dataset")] == [".gitattributes", "a"]
        timer.fire()  # the time to live is over
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(hub.url("tester/blob", "a/b.bin", "dataset"), timeout=120)
    assert hub.unhandled == []


def test_fake_hub_runs_as_a_command_and_stops_on_a_stop_file(tmp_path):
    root = tmp_path / "hub"
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "tests" / "fake_hub.py"), "--root", str(root),
                                "--ttl", "60"], stdout=subprocess.PIPE, text=True)
    try:
        endpoint = process.stdout.readline().strip().split("=", 1)[1]
        assert HfApi(endpoint=endpoint, token="hf_fake").create_repo("tester/x").endswith("/tester/x")
        (root / ".stop").touch()
        assert process.wait(timeout=300) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_validation_runs_none_of_the_folders_code(model_folder, tmp_path, capsys):
    """A dry run of a folder whose configuration code has a side effect does not run it (the code is parsed, and a
    note says so); only --trust-remote-code loads the config with it. A syntax error in that code is refused."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(model_folder, folder)
    marker = tmp_path / "ran.txt"
    code = folder / "configuration_ophclip.py"
    code.write_text(f"open({str(marker)!r}, 'w').write('ran')\n" + code.read_text())
    # In a process where modeling_ophclip is not imported, "ophclip" is a remote-code model type.
    script = (f"import io, sys; from model_cards.publish import publish_model; "
              f"publish_model({str(folder)!r}, {MODEL_ID!r}, dry_run=True, out=io.StringIO(), "
              f"trust_remote_code=sys.argv[1] == 'trust'); "
              f"print(sorted(m for m in sys.modules if m.startswith('modeling_ophclip')))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", script, "no"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not marker.exists() and result.stdout.strip().splitlines()[-1] == "[]"
    result = subprocess.run([sys.executable, "-c", script, "trust"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert marker.read_text() == "ran"
    code.write_text("def broken(:\n")
    with pytest.raises(PublishError, match="configuration_ophclip.py is not valid Python"):
        validate_model_folder(folder)


# -- Spaces: the web app of a model repository --------------------------------------------------------------------------

SPACE_ID = "tester/ophclip-tiny-app"


def test_publish_space_writes_the_folder_and_its_app_runs_from_the_hub(fake_hub, model_folder, tmp_path):
    """`publish space` writes app.py + requirements + the Space card + the app's packages, pushes them as one commit;
    the Space's files downloaded from the Hub build the app for the model repository in a fresh process that imports
    the OphCLIP code from the Space folder, not from this checkout."""
    pytest.importorskip("gradio")
    from huggingface_hub import SpaceCard, snapshot_download

    from model_cards.publish import SPACE_PACKAGES, publish_space

    endpoint, env, hub = fake_hub
    publish_model(model_folder, MODEL_ID, out=io.StringIO())
    folder = tmp_path / "space"
    out = io.StringIO()
    result = publish_space(folder, SPACE_ID, model_repo=MODEL_ID, commit_message="OphCLIP app", out=out)
    assert result.commit_url.startswith(f"{endpoint}/spaces/{SPACE_ID}/commit/")
    repo = hub.repo(SPACE_ID, repo_type="space")
    assert [c["title"] for c in repo["commits"]] == ["initial commit", "OphCLIP app"]
    stored = hub.files(SPACE_ID, repo_type="space")
    assert {"app.py", "requirements.txt", "README.md", "ophclip_cli/app.py", "modeling_ophclip/__init__.py",
            "evaluate_suite/registry.py"} <= set(stored)
    assert ".ophclip-space" not in stored and not any("__pycache__" in p for p in stored)

    card = SpaceCard.load(folder / "README.md").data.to_dict()
    import gradio

    assert card["sdk"] == "gradio" and card["sdk_version"] == gradio.__version__ and card["app_file"] == "app.py"
    assert card["models"] == [MODEL_ID]
    requirements = (folder / "requirements.txt").read_text()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements and "CPU" in requirements
    assert f"gradio=={gradio.__version__}" in requirements and "\ntransformers==" in requirements
    assert repr(MODEL_ID) in (folder / "app.py").read_text()

    # The Space as the Hub serves it: its app builds against the model repository, with its own copy of the code.
    space = snapshot_download(SPACE_ID, repo_type="space", local_dir=tmp_path / "downloaded")
    # Every module of ours the app imports must come from the Space's copy, not from this checkout's install.
    code = ("import app, pathlib, sys; here = pathlib.Path.cwd().resolve(); "
            "ours = ('ophclip_cli', 'modeling_ophclip', 'evaluate_suite', 'datasets_ophvl', 'ophclip_train', "
            "'model_cards'); "
            "outside = sorted(name for name, module in list(sys.modules.items()) if name.split('.')[0] in ours "
            "and getattr(module, '__file__', None) and not pathlib.Path(module.__file__).resolve().is_relative_to(here)); "
            "assert not outside, f'imported from outside the Space: {outside}'; "
            "print(type(app.demo).__name__, app.demo.core.model_id, len(app.demo.core.model.config.to_dict()) > 0)")
    child = subprocess.run([sys.executable, "-c", code], cwd=space, capture_output=True, text=True, timeout=600,
                           env={**_base_env(), **env, "GRADIO_ANALYTICS_ENABLED": "False",
                                "GRADIO_TEMP_DIR": str(tmp_path / "gradio")})
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.split() == ["Blocks", MODEL_ID, "True"]
    assert all((Path(space) / name / "__init__.py").is_file() for name in SPACE_PACKAGES)


def test_publish_space_command_dry_run_and_refusals(fake_hub, tmp_path):
    endpoint, env, hub = fake_hub
    folder = tmp_path / "space"
    result = _cli(["space", folder, SPACE_ID, "--model-repo", MODEL_ID, "--dry-run"], env, check_rc=0)
    assert "dry run, nothing is uploaded" in result.stdout and f"{endpoint}/spaces/{SPACE_ID}" in result.stdout
    assert "app.py" in result.stdout and (folder / "app.py").is_file()
    assert hub.store.load("space", SPACE_ID) is None  # nothing sent
    # the folder exists now: written again only with --overwrite, and never over a folder it did not write
    result = _cli(["space", folder, SPACE_ID, "--model-repo", MODEL_ID, "--dry-run"], env, check_rc=2)
    assert "exists and is not empty; pass --overwrite" in result.stderr
    _cli(["space", folder, SPACE_ID, "--model-repo", MODEL_ID, "--dry-run", "--overwrite"], env, check_rc=0)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    result = _cli(["space", other, SPACE_ID, "--model-repo", MODEL_ID, "--overwrite"], env, check_rc=2)
    assert "was not written by `publish space`" in result.stderr and (other / "notes.txt").is_file()
    result = _cli(["space", tmp_path / "x", SPACE_ID, "--model-repo", "not a repo"], env, check_rc=2)
    assert result.stderr.count("\n") == 1 and "invalid repository id 'not a repo'" in result.stderr
