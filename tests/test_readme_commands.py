"""The README's shell commands run as written, on a small demo's outputs (issue 16: "every command copy-pastes and runs
as written on the demo's outputs").

`tests/test_readme.py` checks that every README command *parses*; here the commands that can run offline on one CPU
in seconds run for real, as subprocesses, and what the README says they write is checked. Every command that
`readme_commands()` finds is either in `RUN` (run here) or in `NOT_RUN` (with the reason); a new README command fails
`test_every_readme_command_is_run_or_listed_as_not_run` until someone classifies it.

The scratch folder (`home`, built once per module) is laid out like a user's after `make demo`, at small size, by the
project's own code:

    ophclip-demo/ophvl-mini/      `generate_ophvl_mini(size="tiny")` (the demo's step 1, with benchmark/)
    ophclip-demo/tokenizer/       `train_wordpiece_tokenizer(ophvl_texts(...))` (the demo's step 2)
    ophclip-demo/model/           a tiny OphCLIP (`ophclip_testing.save_tiny_model`) with the demo's kind of model card
                                  (`model_cards.build_model_card`), standing in for the demo's 300-step model
    case.mp4                      a test video of the mini benchmark
    videos/                       the mini benchmark's test videos
    my_videos/                    two short videos with audio and WebVTT transcripts (`test_ophvl_build.write_video`),
                                  so that `datasets_ophvl.build` needs no Whisper and runs offline
    PeskaVLP.pth, vocab.txt,      a reduced-width predecessor checkpoint at the real key names and its vocabulary
    path/to/Bio_ClinicalBERT/     (`test_convert.Predecessor`); the README's paths exist, so they are not substituted
      vocab.txt
    tiny-clip/                    a tiny random `CLIPModel` (`test_protocols.tiny_clip`)
    real-benchmarks/              an empty folder: no real benchmark is downloaded here
    configs/, train_accelerate.py links to the repository's, so that the commands name them as written

Placeholders (`PLACEHOLDERS`), the only edit made to a command's text:

    CKPT                          -> ophclip-demo/model
    DATA_ROOT                     -> real-benchmarks
    openai/clip-vit-base-patch16  -> tiny-clip (the Hub is not reachable; the README's own table used a tiny CLIP too)

`runs/ophclip-mini/final` needs no substitution: `python train_accelerate.py --config configs/pretrain_mini.yaml`
writes it (the config's `output_dir`), and it runs before the command that reads it.

Size overrides (`SIZE_OVERRIDES`), appended to a command and nothing else:

    python -m datasets_ophvl.mini ophvl-mini          + --size tiny (the default size takes about 30 s)
    python train_accelerate.py --config ...           + --max_steps 1 --video_batch_size 2 (both pretraining commands:
                                                        the tiny OphVL-mini has 4 titled videos, fewer than the
                                                        config's video batch of 8)

Commands run in README order within a "chain" (one working folder, as one terminal would); chains run two at a time.
Each command runs in a process of its own, forked from its chain's runner after the heavy libraries are imported
(`CHAIN_RUNNER`: most of a command's time would otherwise be importing torch and transformers). Each working folder holds links
to the scratch folder's inputs; the chain that writes into `ophclip-demo/model` (`ophclip ood-reference`) gets its own
copy of that folder. The environment is the test's, with `HF_HUB_OFFLINE=1`.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from test_readme import REPO_ROOT, readme_commands

pytest.importorskip("decord")
pytest.importorskip("av")
pytest.importorskip("evaluate")
pytest.importorskip("sklearn")


# -- what is run, what is not, and how ------------------------------------------------------------------------------

PLACEHOLDERS = {
    "CKPT": "ophclip-demo/model",
    "DATA_ROOT": "real-benchmarks",
    "openai/clip-vit-base-patch16": "tiny-clip",
}

PRETRAIN = "python train_accelerate.py --config configs/pretrain_mini.yaml"
PRETRAIN_ON_DEMO = (PRETRAIN + " --data_path ophclip-demo/ophvl-mini --tokenizer_name_or_path ophclip-demo/tokenizer"
                    " --eval_data ophclip-demo/ophvl-mini/benchmark")
MINI = "python -m datasets_ophvl.mini ophvl-mini"

SIZE_OVERRIDES = {
    MINI: ["--size", "tiny"],
    PRETRAIN: ["--max_steps", "1", "--video_batch_size", "2"],
    PRETRAIN_ON_DEMO: ["--max_steps", "1", "--video_batch_size", "2"],
}

# The commands run here, by chain: a chain's commands run one after the other, in README order, in the chain's working
# folder (chains that share a folder share what they write); `AFTER` names the commands of other chains whose outputs a
# chain reads.
CHAINS = {
    "quick start": ("quick-start", [
        "ophclip zero-shot case.mp4 --model ophclip-demo/model --benchmark ophvl-mini-phase --output preds.csv "
        "--timeline timeline.png",
        "python -m evaluate_suite linear-probe --model ophclip-demo/model --benchmark ophvl-mini-phase --root "
        "ophclip-demo/ophvl-mini/benchmark --fractions 0.1 1",
        "python -m datasets_ophvl.build my_videos/ my_ophvl",
        PRETRAIN_ON_DEMO,
        "python -m evaluate_suite zero-shot-phase --model CKPT --benchmark ophvl-mini-phase --root "
        "ophclip-demo/ophvl-mini/benchmark --results results.jsonl",
        "python -m evaluate_suite leaderboard --results results.jsonl --out board/",
        "python -m model_cards.publish model ophclip-demo/model my-org/ophclip-demo --dry-run",
    ]),
    "your own videos": ("own-videos", [
        "python -m modeling_ophclip.convert --checkpoint PeskaVLP.pth --output ophclip-from-peskavlp --tokenizer "
        "path/to/Bio_ClinicalBERT/vocab.txt",
        "ophclip zero-shot case.mp4 --model CKPT --labels incision,capsulorhexis,phacoemulsification --fps 1 "
        "--window 5 --output preds.csv --timeline timeline.png",
        "ophclip embed videos/ --model CKPT --output embeddings.safetensors",
        "ophclip search 'the surgeon tears the anterior capsule' --videos videos/ --model CKPT --top-k 5",
        "ophclip attention case.mp4 --model CKPT --text 'phaco tip in the lens' --output-dir saliency/",
        "ophclip convert --checkpoint PeskaVLP.pth --output ophclip-peskavlp --tokenizer vocab.txt",
        "ophclip ood-reference ophclip-demo/ophvl-mini/benchmark/videos --model ophclip-demo/model --benchmark "
        "ophvl-mini-phase --output ophclip-demo/model/ood_reference.json",
    ]),
    "data": ("ophvl", [MINI]),
    "pretraining": ("ophvl", [
        "python -m ophclip_train.tokenizer --data_path ophvl-mini --output_dir ophvl-mini-tokenizer",
        PRETRAIN,
        "python -m model_cards.publish model runs/ophclip-mini/final my-org/ophclip-mini --dry-run",
    ]),
    "evaluation": ("ophvl", [
        "python -m evaluate_suite zero-shot-phase --model CKPT --benchmark ophvl-mini-phase --root "
        "ophvl-mini/benchmark --plots plots/",
        "python -m evaluate_suite zero-shot-instruments --model CKPT --benchmark ophvl-mini-instruments --root "
        "ophvl-mini/benchmark",
        "python -m evaluate_suite linear-probe --model CKPT --benchmark ophvl-mini-phase --root ophvl-mini/benchmark "
        "--fractions 0.01 0.1 1",
        "python -m evaluate_suite retrieval --model CKPT --root ophvl-mini --max-clips 500",
        "python -m evaluate_suite leaderboard --results results.jsonl --out board/ --model-id CKPT",
        "python -m evaluate_suite table --models CKPT openai/clip-vit-base-patch16 --root DATA_ROOT ophvl-mini "
        "--linear-probe --out table/",
    ]),
}
AFTER = {"pretraining": [MINI], "evaluation": [MINI]}
# Working folders that get their own copy of a path of the scratch folder instead of a link (they write into it).
OWN_COPIES = {"own-videos": ["ophclip-demo/model"]}
TIMEOUT = 300  # seconds per command; the slowest take about 25 s on the shared 2-core machine

# README commands that fail as written: command -> the bug (an xfail(strict=True) mark; flip it when fixed).
KNOWN_BUGS: dict[str, str] = {}

COVERED_BY_TEST_README = "run by tests/test_readme.py::test_cheap_readme_commands_run (offline, seconds)"
BENCHMARK = "a benchmark: minutes of timing, not a test; tests/test_benchmarks.py runs the benchmarks' --quick variants"
NOT_RUN = {
    "make demo": "the full-size demo (minutes) after a venv install; tests/test_demo.py runs a shortened demo, and the "
                 "scratch folder here is the demo's layout at small size",
    "make test": "it is the test suite itself",
    "pip install -e '.[app]'": "installs packages from the network",
    "ophclip app --model ophclip-demo/model": "a web server that runs until stopped; tests/test_app.py serves it on a "
                                              "loopback port and drives it",
    "accelerate launch --multi_gpu --num_processes 8 -m datasets_ophvl.build my_videos/ my_ophvl --shard-multiple 16":
        "needs 8 GPUs; tests/test_ophvl_build_distributed.py runs the build on two CPU processes",
    "accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank 0 --main_process_ip node0 "
    "--main_process_port 29500 -m datasets_ophvl.build /shared/videos /shared/my_ophvl":
        "needs two machines with 8 GPUs each and a shared file system",
    "python train_accelerate.py --help": COVERED_BY_TEST_README,
    "python -m evaluate_suite benchmarks --real": COVERED_BY_TEST_README,
    "python -m evaluate_suite card ophnet-phase": COVERED_BY_TEST_README,
    "accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no "
    "train_accelerate.py --config configs/pretrain_mini.yaml":
        "two training processes on accelerate's fixed default port 29500, which a concurrent multi-process run on "
        "the same machine also takes (one such run here hung after 'saved the final model'), and ~20 s more; the "
        "same launch on a free port is tests/test_train_accelerate.py::test_two_processes_agree",
    "python -m model_cards.publish dataset ophvl-mini my-org/ophvl-mini":
        "pushes to the Hub (no --dry-run); tests/test_publish.py pushes to a loopback fake Hub",
    "python -m model_cards.publish space ophclip-space my-org/ophclip-mini-app --model-repo my-org/ophclip-mini":
        "pushes a Space to the Hub; tests/test_publish.py pushes to a loopback fake Hub",
    "python benchmarks/bench_model.py": BENCHMARK,
    "python benchmarks/bench_data.py": BENCHMARK,
    "python benchmarks/bench_knowledge_base.py": BENCHMARK,
    "python benchmarks/bench_knowledge_base.py --index IVF256,Flat --repeats 5 --step-repeats 3": BENCHMARK,
    "python benchmarks/bench_eval.py": BENCHMARK,
    "python benchmarks/bench_train.py": BENCHMARK,
}

RUN = [command for _, commands in CHAINS.values() for command in commands]


def argv(command: str) -> list[str]:
    """The command as run: placeholders substituted word by word, its size overrides appended."""
    words = [PLACEHOLDERS.get(word, word) for word in shlex.split(command)]
    return words + SIZE_OVERRIDES.get(command, [])


# -- the scratch folder -----------------------------------------------------------------------------------------------

TRANSCRIPT = """WEBVTT

00:00.000 --> 00:02.500
Now we make the capsulorhexis with the cystotome and forceps.

00:02.500 --> 00:05.000
Then hydrodissection is done with balanced salt solution.

00:05.000 --> 00:08.000
The nucleus is removed with phacoemulsification and a chopper.
"""


def build_home(home: Path) -> None:
    """The user's folder after `make demo`, at small size, and the other inputs the README's commands name."""
    import torch

    from datasets_ophvl.mini import generate_ophvl_mini
    from model_cards import build_model_card
    from ophclip_testing import save_tiny_model
    from ophclip_train import demo
    from ophclip_train.tokenizer import ophvl_texts, train_wordpiece_tokenizer
    from test_convert import VOCAB, Predecessor, _randomise_, predecessor_state_dict
    from test_ophvl_build import write_video
    from test_protocols import tiny_clip

    out = home / "ophclip-demo"
    data = out / "ophvl-mini"
    mini = generate_ophvl_mini(data, size="tiny", progress=False)
    train_wordpiece_tokenizer(ophvl_texts(data), vocab_size=2000).save_pretrained(out / "tokenizer")
    model = Path(save_tiny_model(out / "model"))
    stats = {subset: mini[subset] for subset in ("clips", "videos", "silent")}
    build_model_card(model, model_id=demo.MODEL_ID, data_stats=stats, training_args=demo.TRAINING_OPTIONS,
                     tags=["synthetic-data", "demo"]).save(model / "README.md")

    benchmark_videos = sorted((data / "benchmark" / "videos").glob("*.mp4"))
    shutil.copy(benchmark_videos[0], home / "case.mp4")
    (home / "videos").mkdir()
    for video in benchmark_videos:
        shutil.copy(video, home / "videos" / video.name)
    (home / "my_videos").mkdir()
    for seed, name in enumerate(["phaco", "second_case"], start=1):
        write_video(home / "my_videos" / f"{name}.mp4", 8, seed=seed)
        (home / "my_videos" / f"{name}.vtt").write_text(TRANSCRIPT)

    torch.manual_seed(0)
    predecessor = Predecessor()
    _randomise_(predecessor, torch.Generator().manual_seed(1))
    torch.save(predecessor_state_dict(predecessor), home / "PeskaVLP.pth")
    for vocab in (home / "vocab.txt", home / "path" / "to" / "Bio_ClinicalBERT" / "vocab.txt"):
        vocab.parent.mkdir(parents=True, exist_ok=True)
        vocab.write_text("\n".join(VOCAB) + "\n")

    clip, clip_tokenizer = tiny_clip(home / "clip-tokenizer")
    clip.save_pretrained(home / "tiny-clip")
    clip_tokenizer.save_pretrained(home / "tiny-clip")
    (home / "real-benchmarks").mkdir()
    for name in ("configs", "train_accelerate.py"):
        (home / name).symlink_to(REPO_ROOT / name)


def working_folder(home: Path, name: str) -> Path:
    """A folder for one chain: a link to every entry of `home`, except the paths of `OWN_COPIES`, which are copied."""
    folder = home.parent / name
    if folder.exists():
        return folder
    folder.mkdir()
    copies = [Path(p) for p in OWN_COPIES.get(name, [])]

    def fill(source: Path, target: Path):
        for entry in source.iterdir():
            relative = entry.relative_to(home)
            if relative in copies:
                shutil.copytree(entry, target / entry.name, symlinks=True)
            elif any(relative in copy.parents for copy in copies):
                (target / entry.name).mkdir()
                fill(entry, target / entry.name)
            else:
                (target / entry.name).symlink_to(entry)

    fill(home, folder)
    return folder


@dataclass
class Ran:
    command: str
    cwd: Path
    returncode: int | None = None  # None: not run (a command it depends on failed)
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    blocked_by: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


def run_environment() -> dict:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    # `python` and `ophclip` as the README writes them: this environment's
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


# One process per chain imports the heavy libraries once, then forks a fresh child per command, which runs it as
# `python -m MODULE` / `python SCRIPT` / the `ophclip` console script would (argv, working folder, `sys.path[0]`,
# exit status, stdout and stderr to files). Most of a command's time is importing torch and transformers: this keeps
# every command in its own process and pays the imports five times instead of 24. The parent computes nothing before
# forking (no thread pools yet). A line of JSON per finished command reports it; a failure ends the chain.
CHAIN_RUNNER = r"""
import importlib.metadata, json, os, runpy, signal, sys, time, traceback
# Third-party libraries only (ours are imported by each command, as a fresh process would), once, before any fork.
import accelerate, av, datasets, decord, evaluate, faiss, matplotlib, numpy, safetensors, sklearn.linear_model  # noqa
import torch, transformers  # noqa: F401

def run(words):
    if words[0] == "ophclip":
        sys.argv = words
        entry = importlib.metadata.entry_points(group="console_scripts", name="ophclip")
        return next(iter(entry)).load()()
    if words[:2] == ["python", "-m"]:
        sys.argv, sys.path[0] = [words[2], *words[3:]], os.getcwd()
        runpy.run_module(words[2], run_name="__main__", alter_sys=True)
    else:
        script = os.path.abspath(words[1])
        sys.argv, sys.path[0] = [words[1], *words[2:]], os.path.dirname(script)
        runpy.run_path(script, run_name="__main__")
    return 0

for item in json.load(sys.stdin):
    began = time.perf_counter()
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.chdir(item["cwd"])
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(item[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        signal.alarm(item["timeout"])  # a hang guard: SIGALRM ends the child
        try:
            code = run(item["argv"])
        except SystemExit as exit_:
            code = exit_.code
        except BaseException:
            traceback.print_exc()
            code = 1
        if not isinstance(code, int):
            if code is not None:
                print(code, file=sys.stderr)
            code = 0 if code is None else 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    print(json.dumps({"command": item["command"], "returncode": status,
                      "seconds": time.perf_counter() - began}), flush=True)
    if status != 0:
        break
"""


def run_all(home: Path, slots: int = 2) -> dict[str, Ran]:
    """Run every chain (its commands in order, each in a child of the chain's runner process) in its working
    folder, `slots` chains at a time."""
    results = {}
    for name, (folder, commands) in CHAINS.items():
        cwd = working_folder(home, folder)
        for command in commands:
            results[command] = Ran(command, cwd)
    limit = threading.Semaphore(slots)
    env = run_environment()
    logs = home.parent / "logs"
    logs.mkdir(exist_ok=True)

    def chain(name: str):
        _, commands = CHAINS[name]
        blocked = None
        for needed in AFTER.get(name, []):
            results[needed].done.wait()
            if results[needed].returncode != 0:
                blocked = needed
        items = [{"command": command, "argv": argv(command), "cwd": str(results[command].cwd),
                  "stdout": str(logs / f"{RUN.index(command):02d}.out"),
                  "stderr": str(logs / f"{RUN.index(command):02d}.err"), "timeout": TIMEOUT} for command in commands]
        if blocked is None:
            with limit:
                runner = subprocess.Popen([sys.executable, "-c", CHAIN_RUNNER], env=env, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True)
                runner.stdin.write(json.dumps(items))
                runner.stdin.close()
                for line in runner.stdout:
                    report = json.loads(line)
                    ran = results[report["command"]]
                    ran.returncode, ran.seconds = report["returncode"], report["seconds"]
                    ran.stdout = Path(logs / f"{RUN.index(ran.command):02d}.out").read_text()
                    ran.stderr = Path(logs / f"{RUN.index(ran.command):02d}.err").read_text()
                    if ran.returncode != 0:
                        blocked = ran.command
                    ran.done.set()
                runner.wait()
        for command in commands:
            ran = results[command]
            if not ran.done.is_set():  # not run: an earlier command failed (or the runner itself did)
                ran.blocked_by = blocked or f"the chain's runner (exit {runner.returncode})"
                ran.done.set()

    threads = [threading.Thread(target=chain, args=(name,), daemon=True) for name in CHAINS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme_commands") / "home"
    folder.mkdir()
    build_home(folder)
    return folder


@pytest.fixture(scope="module")
def ran(home) -> dict[str, Ran]:
    return run_all(home)


# -- what each command writes, as the README says ---------------------------------------------------------------------


def _json_out(ran: Ran) -> dict:
    return json.loads(ran.stdout)


def _png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def _csv_rows(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert len(lines) >= 2, f"{path} has no data row"
    return lines


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _model_folder(folder: Path) -> None:
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file(), folder
    assert (folder / "modeling_ophclip.py").is_file(), folder  # the remote code travels with the weights


def check_zero_shot(ran: Ran):
    header = _csv_rows(ran.cwd / "preds.csv")[0]
    assert header.startswith("start,end,label,score"), header
    _png(ran.cwd / "timeline.png")


def check_labels_zero_shot(ran: Ran):
    check_zero_shot(ran)
    header = _csv_rows(ran.cwd / "preds.csv")[0]
    assert "prob_incision" in header and "prob_phacoemulsification" in header, header


def check_linear_probe(fractions):
    def check(ran: Ran):
        result = _json_out(ran)
        assert result["protocol"] == "linear-probe" and set(result["metrics"]) == fractions, result["metrics"].keys()
        protocols = {r["protocol"] for r in _records(ran.cwd / "results.jsonl")}
        assert {f"linear-probe-{fraction}" for fraction in fractions} <= protocols, protocols
    return check


def check_build(ran: Ran):
    out = ran.cwd / "my_ophvl"
    assert "OphVL build summary" in ran.stdout
    assert list((out / "data" / "clips").glob("train-*.tar")), "no clip shard"
    assert (out / "README.md").is_file() and (out / ".ophvl-build" / "report.json").is_file()
    report = json.loads((out / ".ophvl-build" / "report.json").read_text())
    assert not report.get("skipped_files"), report.get("skipped_files")


def check_pretraining(ran: Ran):
    _model_folder(ran.cwd / "runs" / "ophclip-mini" / "final")
    assert (ran.cwd / "runs" / "ophclip-mini" / "final" / "README.md").is_file()


def check_zero_shot_phase(plots: bool):
    def check(ran: Ran):
        result = _json_out(ran)
        assert result["protocol"] == "zero-shot" and 0 <= result["metrics"]["accuracy"] <= 1
        assert result["metrics"]["num_videos"] >= 1
        assert any(r["benchmark"] == "ophvl-mini-phase" for r in _records(ran.cwd / "results.jsonl"))
        if plots:
            assert result["plots"]
            for plot in result["plots"]:
                _png(ran.cwd / plot)
    return check


def check_leaderboard(model_id: bool):
    def check(ran: Ran):
        board = ran.cwd / "board"
        assert "ophclip-demo/model" in (board / "leaderboard.md").read_text()
        if model_id:
            assert (board / "model_index.yaml").is_file() and list((board / ".eval_results").glob("*.yaml"))
    return check


def check_dry_run(ran: Ran):
    assert "dry run, nothing is uploaded" in ran.stdout and "model.safetensors" in ran.stdout, ran.stdout


def check_convert(output: str):
    def check(ran: Ran):
        folder = ran.cwd / output
        _model_folder(folder)
        assert (folder / "processor_config.json").is_file() or (folder / "preprocessor_config.json").is_file()
        assert (folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file()
    return check


def check_embed(ran: Ran):
    from safetensors.numpy import load_file

    tensors = load_file(ran.cwd / "embeddings.safetensors")
    assert tensors and all(t.shape[0] >= 1 for t in tensors.values()), {k: t.shape for k, t in tensors.items()}


def check_search(ran: Ran):
    lines = [line for line in ran.stdout.splitlines() if line.strip()]
    assert lines[0].split()[:2] == ["rank", "video"] and len(lines) == 1 + 5, ran.stdout


def check_attention(ran: Ran):
    images = sorted((ran.cwd / "saliency").glob("*.png"))
    assert images, "no saliency map"
    for image in images:
        _png(image)


def check_ood_reference(ran: Ran):
    reference = json.loads((ran.cwd / "ophclip-demo" / "model" / "ood_reference.json").read_text())
    assert reference["videos"] == 3 and reference["frames"] > 0, reference.keys()
    # written into this chain's own copy: the other chains saw the model folder as the demo leaves it
    assert not (ran.cwd.parent / "home" / "ophclip-demo" / "model" / "ood_reference.json").exists()


def check_mini(ran: Ran):
    data = ran.cwd / "ophvl-mini"
    for subset in ("clips", "videos", "silent"):
        assert list((data / "data" / subset).glob("train-*.tar")), subset
    assert (data / "benchmark" / "videos").is_dir() and (data / "benchmark-shifted" / "videos").is_dir()


def check_tokenizer(ran: Ran):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ran.cwd / "ophvl-mini-tokenizer")
    assert len(tokenizer) > 100


def check_instruments(ran: Ran):
    result = _json_out(ran)
    assert result["protocol"] == "zero-shot" and 0 <= result["metrics"]["mAP"] <= 1


def check_retrieval(ran: Ran):
    result = _json_out(ran)
    assert result["protocol"] == "retrieval" and 0 <= result["metrics"]["t2v_R@1"] <= 1
    assert result["metrics"]["num_clips"] >= 1


def check_table(ran: Ran):
    table = ran.cwd / "table"
    text = (table / "table.md").read_text()
    assert "ophclip-demo/model" in text and "tiny-clip" in text, text
    assert len(_csv_rows(table / "table.csv")) >= 3  # a header and one row per model


CHECKS = dict(zip(RUN, [  # in the order of RUN
    check_zero_shot,
    check_linear_probe({"10%", "100%"}),
    check_build,
    check_pretraining,
    check_zero_shot_phase(plots=False),
    check_leaderboard(model_id=False),
    check_dry_run,
    check_convert("ophclip-from-peskavlp"),
    check_labels_zero_shot,
    check_embed,
    check_search,
    check_attention,
    check_convert("ophclip-peskavlp"),
    check_ood_reference,
    check_mini,
    check_tokenizer,
    check_pretraining,
    check_dry_run,
    check_zero_shot_phase(plots=True),
    check_instruments,
    check_linear_probe({"1%", "10%", "100%"}),
    check_retrieval,
    check_leaderboard(model_id=True),
    check_table,
], strict=True))


# -- the tests --------------------------------------------------------------------------------------------------------


def test_every_readme_command_is_run_or_listed_as_not_run():
    commands = set(readme_commands())
    run, not_run = set(RUN), set(NOT_RUN)
    assert not run & not_run, f"both run and listed as not run: {sorted(run & not_run)}"
    unclassified = commands - run - not_run
    assert not unclassified, ("README commands neither run here nor listed in NOT_RUN (add each to a chain of CHAINS "
                              f"or to NOT_RUN with the reason): {sorted(unclassified)}")
    stale = (run | not_run) - commands
    assert not stale, f"no longer in the README: {sorted(stale)}"
    assert len(RUN) == len(run) and set(CHECKS) == run
    assert set(SIZE_OVERRIDES) <= run and set(KNOWN_BUGS) <= run


def test_placeholders_are_the_only_edit():
    for command in RUN:
        words, run = shlex.split(command), argv(command)
        extra = SIZE_OVERRIDES.get(command, [])
        assert run[len(run) - len(extra):] == extra
        assert [PLACEHOLDERS.get(word, word) for word in words] == run[:len(run) - len(extra)]


def _param(command: str):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[command])] if command in KNOWN_BUGS else []
    return pytest.param(command, marks=marks, id=f"{RUN.index(command):02d} " + " ".join(shlex.split(command)[:5]))


@pytest.mark.parametrize("command", [_param(command) for command in RUN])
def test_readme_command_runs_as_written(command, ran):
    result = ran[command]
    if result.blocked_by is not None:
        pytest.skip(f"not run: the command it depends on failed: {result.blocked_by}")
    shown = shlex.join(argv(command))
    assert result.returncode == 0, (f"README command failed (exit {result.returncode}, {result.seconds:.0f} s, in "
                                    f"{result.cwd}): {shown}\n{result.stderr[-3000:]}")
    CHECKS[command](result)
