"""The demo (`make demo` / `python -m ophclip_train.demo`) on a shortened run, and what it proves about learning.

This is also the learning test of pretraining: on OphVL-mini a short run of `train_accelerate.py` with the full
objective lowers the clip-level loss clearly and reaches a zero-shot phase accuracy of at least 3x chance on the
held-out benchmark.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ophclip_train import demo


REPO_ROOT = Path(__file__).resolve().parent.parent
# Shortened: fewer procedures and steps than the default (40 / 40 / 300); still several epochs of the clips.
SHORT = ["--videos", "16", "--silent", "12", "--max-steps", "160"]


def run_demo(*args, timeout=900):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env["TOKENIZERS_PARALLELISM"] = "false"
    return subprocess.run([sys.executable, "-m", "ophclip_train.demo", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = run_demo("--output-dir", str(out), *SHORT)
    assert result.returncode == 0, result.stderr[-4000:]
    return out, result


def test_demo_learns_well_above_chance(demo_run):
    out, result = demo_run
    summary = json.loads((out / "summary.json").read_text())
    full = summary["scores"][demo.MODEL_ID]["clinic A"]
    ablation = summary["scores"][demo.ABLATION_ID]["clinic A"]
    chance = summary["chance_accuracy"]
    assert chance == pytest.approx(1 / 6)
    # The headline claim of the demo, with the margin the issue asks for.
    assert full["phase"]["accuracy"] >= 3 * chance, full
    assert ablation["phase"]["accuracy"] > 2 * chance, ablation  # learning does not hinge on retrieval
    # The clip-level contrastive loss falls clearly: from about ln(32) = 3.47 (chance over the batch) to well below.
    assert summary["clip_loss_first"] > 2.5
    assert summary["clip_loss_last"] < 0.6 * summary["clip_loss_first"], summary
    # Instruments are scored too (mAP of a random scorer would be about the instruments' prevalence).
    assert 0 < full["instruments"]["mAP"] <= 1
    # Both benchmarks are scored for both runs; retrieval quality is reported against its chance level.
    for name in (demo.MODEL_ID, demo.ABLATION_ID):
        assert set(summary["scores"][name]) == {"clinic A", "clinic B"}
        assert 0 <= summary["scores"][name]["clinic B"]["phase"]["accuracy"] <= 1
    precision = summary["retrieval_precision_cataract"]
    assert 0 <= precision["last"] <= 1 and 0 < precision["chance"] < 1
    assert "retrieval precision@4 (cataract type)" in result.stdout
    assert f"Everything is in {out}" in result.stdout
    for step in range(1, 8):
        assert f"[{step}/7]" in result.stdout


def test_demo_writes_model_card_leaderboard_and_pictures(demo_run):
    from huggingface_hub import ModelCard
    from transformers import AutoModel, AutoProcessor

    out, _ = demo_run
    files = json.loads((out / "summary.json").read_text())["files"]
    model_dir = Path(files["model"])
    model = AutoModel.from_pretrained(model_dir, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
    assert type(model).__name__ == "OphCLIPModel" and processor.video_processor.crop_size["height"] == 64
    assert (model_dir / "modeling_ophclip.py").is_file()

    card = ModelCard.load(model_dir / "README.md")
    results = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    summary = json.loads((out / "summary.json").read_text())
    accuracy = summary["scores"][demo.MODEL_ID]["clinic A"]["phase"]["accuracy"]
    assert results[(demo.PHASE_BENCHMARK, "accuracy")] == pytest.approx(100 * accuracy, abs=0.01)
    assert "| video-classification |" in card.text or "zero-shot accuracy" in card.text
    assert list((model_dir / ".eval_results").glob("*.yaml"))
    assert str(out) not in card.text  # the card is read elsewhere: paths in it are relative to the demo folder

    leaderboard = (out / "leaderboard.md").read_text()
    assert demo.MODEL_ID in leaderboard and demo.ABLATION_ID in leaderboard

    timelines = [Path(p) for p in files["timelines"]]
    assert timelines and all(p.suffix == ".png" and p.stat().st_size > 1000 for p in timelines)
    attention = [Path(p) for p in files["attention"]]
    assert len(attention) == 7 and attention[-1].name == "overview.png"  # one frame per phase, and all of them
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in attention)


def test_demo_skip_ablation_leaves_out_the_second_run(tmp_path):
    """`--skip-ablation` (`make demo DEMO_ARGS=--skip-ablation`): no run without retrieval, no evaluation of it; the
    rest of the demo is whole. A tiny run: what is checked is which steps happen, not what is learnt."""
    out = tmp_path / "out"
    result = run_demo("--output-dir", str(out), "--videos", "8", "--silent", "8", "--max-steps", "4",
                      "--skip-ablation")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "[4/7] the ablation: skipped (--skip-ablation)" in result.stdout
    assert "ablation (retrieval off)" not in result.stdout and "[7/7]" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["scores"]) == [demo.MODEL_ID] and summary["files"]["ablation_model"] is None
    assert not (out / "runs" / "no-retrieval").exists() and (out / "runs" / "full").is_dir()
    leaderboard = (out / "leaderboard.md").read_text()
    assert demo.MODEL_ID in leaderboard and demo.ABLATION_ID not in leaderboard
    assert (out / "model" / "README.md").is_file()


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = run_demo("--output-dir", str(tmp_path), "--max-steps", "1", timeout=120)
    assert result.returncode == 1 and "exists and is not empty" in result.stderr
    result = run_demo("--output-dir", str(tmp_path), "--max-steps", "1", "--overwrite", timeout=120)
    assert result.returncode == 1 and "the demo did not write it" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_demo_rejects_bad_options(capsys):
    assert demo.main(["--max-steps", "0"]) == 2
    assert "--max-steps must be >= 1" in capsys.readouterr().err
