"""`python -m evaluate_suite`: every subcommand end to end through `main([...])`, on saved tiny checkpoints (OphCLIP and
CLIP folders, loaded by `load_encoder` from their model_type) and OphVL-mini's tiny benchmark."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("decord")
pytest.importorskip("av")
pytest.importorskip("evaluate")
pytest.importorskip("sklearn")

from test_protocols import read_jsonl, tiny_clip, tiny_ophclip  # noqa: E402

from datasets_ophvl.mini import generate_ophvl_mini  # noqa: E402
from evaluate_suite.cli import build_parser, main  # noqa: E402
from evaluate_suite.models import CLIPEncoder, OphCLIPEncoder, load_encoder  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("benchmarks", "card", "zero-shot-phase", "zero-shot-instruments", "linear-probe", "retrieval",
            "leaderboard", "table")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def mini(workdir) -> Path:
    generate_ophvl_mini(workdir / "mini", size="tiny", progress=False)
    return workdir / "mini"


@pytest.fixture(scope="module")
def ophclip_dir(workdir) -> Path:
    model, processor = tiny_ophclip()
    folder = workdir / "tiny-ophclip"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_dir(workdir) -> Path:
    model, tokenizer = tiny_clip(workdir / "clip-tokenizer")
    folder = workdir / "tiny-clip"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run(argv, capsys) -> tuple[int, dict | str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    try:
        return code, json.loads(captured.out), captured.err
    except json.JSONDecodeError:
        return code, captured.out, captured.err


# -- help -------------------------------------------------------------------------------------------------------------


def test_module_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "evaluate_suite", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert all(command in result.stdout for command in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m evaluate_suite " + command)
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings} has no help text"


# -- model loading ----------------------------------------------------------------------------------------------------


def test_load_encoder_picks_the_adapter_by_model_type(ophclip_dir, clip_dir, workdir):
    ophclip = load_encoder(ophclip_dir, device="cpu")
    clip = load_encoder(clip_dir, device="cpu")
    assert isinstance(ophclip, OphCLIPEncoder) and isinstance(clip, CLIPEncoder)
    assert ophclip.model_id == str(ophclip_dir)
    assert clip.video_processor.crop_size == {"height": 32, "width": 32}  # the tower's image_size
    remote = load_encoder(ophclip_dir, trust_remote_code=True, device="cpu")
    assert type(remote.model).__module__.startswith("transformers_modules")  # the checkpoint's own code
    assert remote.weights_hash == ophclip.weights_hash
    from transformers import BertConfig

    bert = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1)
    bert.save_pretrained(workdir / "bert")
    with pytest.raises(ValueError, match="'bert' model; the evaluation suite has adapters for"):
        load_encoder(workdir / "bert")


# -- every command end to end -----------------------------------------------------------------------------------------


def test_benchmarks_command(capsys):
    code, out, _ = run(["benchmarks"], capsys)
    assert code == 0 and "ophvl-mini-phase" in out and "ophvl-mini-instruments" in out
    assert "ophvl-mini-shifted-phase" in out and "ophvl-mini-shifted-instruments" in out


def test_zero_shot_phase_command(ophclip_dir, mini, tmp_path, capsys):
    results, plots = tmp_path / "results.jsonl", tmp_path / "plots"
    code, out, err = run(["zero-shot-phase", "--model", ophclip_dir, "--model-name", "tiny", "--benchmark",
                          "ophvl-mini-phase", "--root", mini / "benchmark", "--smooth-window", "3", "--plots", plots,
                          "--num-workers", "0", "--results", results], capsys)
    assert code == 0, err
    assert out["protocol"] == "zero-shot" and out["model_id"] == "tiny" and out["skipped"] == {}
    assert {"accuracy", "f1", "accuracy_smoothed", "f1_smoothed"} <= set(out["metrics"])
    assert len(out["plots"]) == 2 and all(Path(p).is_file() for p in out["plots"])  # confusion + the test video
    (record,) = read_jsonl(results)
    assert record["model_id"] == "tiny" and record["benchmark"] == "ophvl-mini-phase"


def test_zero_shot_instruments_command_with_clip(clip_dir, mini, tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    code, out, err = run(["zero-shot-instruments", "--model", clip_dir, "--benchmark", "ophvl-mini-instruments",
                          "--root", mini / "benchmark", "--negative-template", "no {} here.", "--num-workers", "2",
                          "--results", results], capsys)
    assert code == 0, err
    assert 0 <= out["metrics"]["mAP"] <= 1 and 0 <= out["metrics"]["FPR"] <= 1
    (record,) = read_jsonl(results)
    assert record["extra"]["negative_templates"] == ["no {} here."] and record["model_id"] == str(clip_dir)


def test_linear_probe_command(ophclip_dir, mini, tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    code, out, err = run(["linear-probe", "--model", ophclip_dir, "--benchmark", "ophvl-mini-phase", "--root",
                          mini / "benchmark", "--fractions", "0.5", "1", "--seeds", "0", "1", "--num-workers", "0",
                          "--results", results], capsys)
    assert code == 0, err
    assert list(out["metrics"]) == ["50%", "100%"]
    assert [r["protocol"] for r in read_jsonl(results)] == ["linear-probe-50%", "linear-probe-100%"]


def test_retrieval_and_leaderboard_commands(ophclip_dir, clip_dir, mini, tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    for model in (ophclip_dir, clip_dir):
        code, out, err = run(["retrieval", "--model", model, "--root", mini, "--max-clips", "10", "--num-frames", "4",
                              "--num-workers", "0", "--results", results], capsys)
        assert code == 0, err
        assert out["metrics"]["num_clips"] == 10 and 0 <= out["metrics"]["t2v_R@1"] <= 1  # a fraction, as all rates
    code, out, err = run(["leaderboard", "--results", results, "--out", tmp_path / "board", "--model-id",
                          str(ophclip_dir)], capsys)
    assert code == 0, err
    assert out.startswith("### Retrieval\n\n| model |") and f"wrote {tmp_path / 'board' / 'leaderboard.md'}" in out
    table = (tmp_path / "board" / "leaderboard.md").read_text()
    assert "ophvl-clips:mini" in table and str(clip_dir) in table and str(ophclip_dir) in table
    assert (tmp_path / "board" / "model_index.yaml").is_file()


def test_input_errors_exit_2_with_one_line(ophclip_dir, mini, tmp_path, capsys):
    common = ["--model", ophclip_dir, "--results", tmp_path / "r.jsonl", "--num-workers", "0"]
    code, _, err = run(["zero-shot-phase", *common, "--benchmark", "no-such-benchmark", "--root", mini], capsys)
    assert code == 2 and "unknown benchmark 'no-such-benchmark'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["zero-shot-phase", *common, "--benchmark", "ophvl-mini-phase", "--root", tmp_path / "nope"],
                       capsys)
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1  # before loading the model
    code, _, err = run(["zero-shot-instruments", *common, "--benchmark", "ophvl-mini-phase", "--root",
                        mini / "benchmark"], capsys)
    assert code == 2 and "is a 'phase' benchmark" in err
    code, _, err = run(["retrieval", *common, "--root", mini, "--shards", "data/none/*.tar"], capsys)
    assert code == 2 and "no shard matches" in err
    code, _, err = run(["zero-shot-phase", "--model", tmp_path / "no-model", "--benchmark", "ophvl-mini-phase",
                        "--root", mini / "benchmark"], capsys)
    assert code == 2 and f"model '{tmp_path / 'no-model'}': no such folder; expected a model folder" in err
    assert not (tmp_path / "r.jsonl").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["zero-shot-phase", *map(str, common), "--benchmark", "ophvl-mini-phase", "--root", str(mini),
              "--fps", "0"])
    assert exit_info.value.code == 2 and "must be > 0" in capsys.readouterr().err


# -- issue 16: model paths, progress, units, fractions, the benchmark list -----------------------------------------


def test_doctests_of_the_model_path_progress_and_probe_modules():
    import doctest

    from evaluate_suite import model_path, progress
    from evaluate_suite.protocols import linear_probing

    for module in (model_path, progress, linear_probing):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0, module.__name__


def test_a_path_that_is_not_a_model_gives_one_clear_line_in_both_commands(mini, workdir, tmp_path, capsys):
    """A missing folder, a folder without config.json, a config without model_type and a file: one line saying what
    is wrong and what was expected, the same from `python -m evaluate_suite` and from `ophclip` (one function)."""
    from ophclip_cli.main import main as ophclip_main

    (tmp_path / "empty").mkdir()
    (tmp_path / "untyped").mkdir()
    (tmp_path / "untyped" / "config.json").write_text('{"hidden_size": 8}')
    (tmp_path / "weights.bin").write_bytes(b"\0")
    video = next((mini / "benchmark").rglob("*.mp4"))
    cases = {
        tmp_path / "runs" / "missing" / "final": "no such folder; expected a model folder (config.json + weights",
        tmp_path / "empty": "the folder has no config.json; expected a model folder",
        tmp_path / "untyped": "config.json names no model_type; expected the config of a transformers model",
        tmp_path / "weights.bin": "is a file, not a folder; expected a model folder",
    }
    for path, expected in cases.items():
        code, _, err = run(["zero-shot-phase", "--model", path, "--benchmark", "ophvl-mini-phase", "--root",
                            mini / "benchmark", "--results", tmp_path / "r.jsonl"], capsys)
        assert code == 2 and f"model '{path}'" in err and expected in err, err
        assert len(err.strip().splitlines()) == 1 and "Repo id" not in err and "Should have a" not in err
        evaluate_line = err.strip().split("error: ", 1)[1]
        code = ophclip_main(["zero-shot", str(video), "--model", str(path), "--labels", "a,b", "--output",
                             str(tmp_path / "p.csv")])
        err = capsys.readouterr().err
        assert code == 1 and err.strip() == f"ophclip zero-shot: error: {evaluate_line}", err
    assert not (tmp_path / "r.jsonl").exists() and not (tmp_path / "p.csv").exists()
    # A Hub id (not a local path) that cannot be read: one line too, without a network request here.
    from evaluate_suite.model_path import ModelPathError, read_model_config

    with pytest.raises(ModelPathError, match=r"^model 'org/not-cached' is not a local folder, and its config could "
                                             r"not be read from the Hub \(.*\); expected a model folder"):
        read_model_config("org/not-cached", local_files_only=True, cache_dir=tmp_path / "cache")


def test_progress_bars_on_a_terminal_only_and_off_with_quiet(ophclip_dir, mini, tmp_path, capsys):
    from evaluate_suite.progress import set_progress

    common = ["--model", ophclip_dir, "--benchmark", "ophvl-mini-phase", "--root", mini / "benchmark",
              "--num-workers", "0", "--results", tmp_path / "r.jsonl"]
    code, _, err = run(["zero-shot-phase", *common], capsys)  # stderr is not a terminal here: no bar
    assert code == 0 and "frames of" not in err
    set_progress(True)  # as on a terminal
    try:
        code, _, err = run(["zero-shot-phase", *common], capsys)
        assert code == 0 and "frames of 1 videos" in err
        code, _, err = run(["zero-shot-phase", *common, "--quiet"], capsys)
        assert code == 0 and "frames of" not in err
    finally:
        set_progress(None)


def test_linear_probe_warns_when_fractions_select_the_same_videos(ophclip_dir, mini, tmp_path, capsys):
    """`--fractions 0.01 0.1 1` on a small benchmark: the rows that train on the same videos are named in a warning
    (and in the JSON) with the number of videos each row actually trained on."""
    with pytest.warns(UserWarning) as caught:
        code, out, err = run(["linear-probe", "--model", ophclip_dir, "--benchmark", "ophvl-mini-phase", "--root",
                              mini / "benchmark", "--fractions", "0.01", "0.1", "1", "--seeds", "0",
                              "--num-workers", "0", "--results", tmp_path / "r.jsonl"], capsys)
    assert code == 0, err
    rows = out["metrics"]
    pool = rows["100%"]["train_pool"]
    assert pool < 10  # small enough that 1% and 10% are both one video
    assert [rows[label]["train_videos"] for label in ("1%", "10%", "100%")] == [1, 1, pool]
    same = "1%, 10% and 100% all" if pool == 1 else "1% and 10% both"
    expected = f"fractions {same} train on 1 of {pool} video{'s' if pool > 1 else ''} (the same draws; their rows " \
               f"are identical)"
    assert out["warnings"] == [expected]
    assert [str(w.message) for w in caught] == [f"benchmark 'ophvl-mini-phase': {expected}"]
    assert all(0 <= rows[label]["accuracy"] <= 1 for label in rows)  # fractions, as every rate
    # Without a repeated size there is no warning.
    from evaluate_suite.protocols.linear_probing import same_size_fractions

    assert same_size_fractions([0.01, 0.1, 1.0], 200) == []


def test_benchmark_descriptions_are_wrapped_at_word_boundaries(capsys):
    from evaluate_suite.registry import get_benchmark, list_benchmarks

    code, out, _ = run(["benchmarks"], capsys)
    assert code == 0
    lines = out.splitlines()
    described = [line.strip() for line in lines if line.startswith("    ")]
    assert described and all(len(line) <= 120 for line in lines if line.startswith("    "))
    words = {word for name in list_benchmarks() for word in (get_benchmark(name).description or "").split()}
    for line in described:
        for word in line.split():
            assert word in words or word == "...", f"{word!r} is cut: {line}"


# -- issue 17: cards, prompt modes, splits, the table --------------------------------------------------------------


def test_benchmarks_real_and_card_commands(tmp_path, capsys):
    code, out, _ = run(["benchmarks", "--real"], capsys)
    assert code == 0 and "ophvl-mini" not in out and len(out.strip().splitlines()) >= 11
    code, out, _ = run(["card", "ophnet-phase"], capsys)
    assert code == 0 and out.startswith("# ophnet-phase") and "Step Interval" in out
    code, out, _ = run(["card", "--all", "--out", tmp_path / "cards"], capsys)
    assert code == 0 and (tmp_path / "cards" / "cadis-instruments.md").is_file()
    code, _, err = run(["card"], capsys)
    assert code == 2 and "--all" in err


def test_zero_shot_prompt_mode_and_split_options(ophclip_dir, mini, tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    code, out, err = run(["zero-shot-phase", "--model", ophclip_dir, "--benchmark", "ophvl-mini-phase", "--root",
                          mini / "benchmark", "--prompts", "sentence", "--num-workers", "0", "--results", results],
                         capsys)
    assert code == 0, err
    assert out["protocol"] == "zero-shot-sentence" and out["prompt_mode"] == "sentence"
    (record,) = read_jsonl(results)
    assert record["extra"]["prompt_mode"] == "sentence"
    code, _, err = run(["zero-shot-phase", "--model", ophclip_dir, "--benchmark", "ophvl-mini-phase", "--root",
                        mini / "benchmark", "--split", "dev", "--results", results], capsys)
    assert code == 2 and "has splits" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["zero-shot-phase", "--model", ophclip_dir, "--benchmark", "ophnet-phase", "--root",
                        mini / "benchmark", "--unlabelled", "Idle", "--results", results], capsys)
    assert code == 2 and "not labels of the dataset" in err


def _fixture_root(root: Path) -> Path:
    """A data root with two real-layout fixtures: `cataract-1k/` (one case) and `cadis/` (Video02)."""
    import numpy as np
    from test_benchmarks import cataract1k_case
    from test_protocols import _cadis_fixture

    from datasets_ophvl.media import encode_video

    cataract1k_case(root / "cataract-1k", "11", ["Incision,0,19,0,1.9", "Capsule Pulishing,20,39,2,3.9"], fps=10,
                    frames=40, video=False)
    (root / "cataract-1k" / "videos").mkdir(parents=True)
    (root / "cataract-1k" / "videos" / "case_11.mp4").write_bytes(
        encode_video(np.zeros((40, 32, 32, 3), dtype=np.uint8), 10))
    _cadis_fixture(root / "cadis")
    return root


def test_table_command(ophclip_dir, clip_dir, mini, tmp_path, capsys):
    """Two models (a tiny OphCLIP and a tiny vanilla CLIPModel) on the OphVL-mini benchmarks plus real-layout fixtures:
    the paper-style table with the quoted reference row, CSV, leaderboard and per-model metadata; a second run reuses
    every result."""
    fixtures = _fixture_root(tmp_path / "data")
    results, out_dir = tmp_path / "results.jsonl", tmp_path / "table"
    argv = ["table", "--models", ophclip_dir, clip_dir, "--model-names", "tiny-ophclip", "tiny-clip", "--root", mini,
            fixtures, "--linear-probe", "--results", results, "--out", out_dir, "--num-workers", "0"]
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "benchmarks found: " in captured.err and "[1/" in captured.err
    table = (out_dir / "table.md").read_text()
    for row in ("tiny-ophclip", "tiny-clip", "OphCLIP (paper; quoted)"):
        assert row in table
    for column in ("ophvl-mini-phase (acc / F1)", "ophvl-mini-instruments (mAP / FPR)",
                   "cataract-1k-phase (acc / F1)", "cadis-instruments (mAP / FPR)", "### Linear probe"):
        assert column in table
    assert "62.8 / 48.5" in table  # the quoted reference, in its own row
    assert "Linear probes not run (no official train/test split): cataract-1k-phase" in table
    csv_text = (out_dir / "table.csv").read_text()
    assert "OphCLIP (paper; quoted),quoted,cataract-1k-phase,zero-shot,accuracy,62.80" in csv_text
    assert ",ours,cadis-instruments,zero-shot,mAP," in csv_text
    assert (out_dir / "leaderboard" / "leaderboard.md").is_file()
    for model in ("tiny-ophclip", "tiny-clip"):
        assert (out_dir / "models" / model / "model_index.yaml").is_file()
        assert list((out_dir / "models" / model / ".eval_results").glob("*.yaml"))
    records = read_jsonl(results)
    protocols = {(r["model_id"], r["benchmark"], r["protocol"]) for r in records}
    assert ("tiny-clip", "ophvl-mini-shifted-instruments", "linear-probe-100%") in protocols
    assert ("tiny-ophclip", "cadis-instruments", "zero-shot") in protocols
    count = len(records)

    from evaluate_suite.table import run_table

    again = run_table([str(ophclip_dir), str(clip_dir)], [mini, fixtures], results_file=results,
                      model_names=["tiny-ophclip", "tiny-clip"], linear_probe=True, log=lambda line: None)
    assert again["computed"] == [] and len(again["reused"]) == len(protocols) and len(read_jsonl(results)) == count
    assert again["markdown"].split("### Linear probe")[0] == table.split("# Benchmarks\n\n")[1].split(
        "### Linear probe")[0]
