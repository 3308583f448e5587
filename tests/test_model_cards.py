"""Model and dataset cards: sections and metadata for an OphVL-mini-like run, metadata round trips through
`ModelCard.load` / `DatasetCard.load`, and the cards' code examples run as written against local folders."""

import json
import re

import pytest
import torch
from huggingface_hub import DatasetCard, EvalResult, ModelCard

from model_cards import build_dataset_card, build_model_card, examples_for, folder_stats, ophvl_configs
from model_cards import dataset_card as dataset_card_module
from model_cards import model_card as model_card_module
from modeling_ophclip import OphCLIPModel
from ophclip_testing import OphCLIPModelTester, tiny_processor
from remote_code import run_without_project


MODEL_ID = "tester/ophclip-tiny"
DATASET_ID = "tester/ophvl-mini"
# A run's options as train_accelerate.py writes them to pretraining_config.json (a subset of the keys).
TRAINING_ARGS = {
    "model_config": "tiny", "data_path": DATASET_ID, "num_frames": 4, "clip_batch_size": 8, "video_batch_size": 4,
    "schedule": "clip:3,video:1", "retrieval": True, "retrieval_k": 4, "retrieval_weight": 0.5,
    "retrieval_form": "encoded",
    "bank_refresh_rows_per_step": 2, "bank_full_refresh_every": 0, "simsiam_weight": 0.0, "learning_rate": 5e-5,
    "max_steps": 200, "seed": 42, "mixed_precision": "no", "hub_token": "hf_secret", "tokenizer_name_or_path": None,
}
DATA_STATS = {"clips": {"samples": 26, "shards": 4}, "videos": {"samples": 4, "shards": 4},
              "silent": {"samples": 4, "shards": 4}}
RETRIEVAL_EQUATION = ("L_ret = ½ · ( −1/|I| Σ_i log( Σ_{c∈P_i} exp(⟨w_i, s_c⟩ / τ) / Σ_{c∈C} exp(⟨w_i, s_c⟩ / τ) )")
DETACHED_EQUATION = ("L_ret = −1/B Σ_i log( Σ_k exp(⟨v_i, s_ik⟩ / τ) / Σ_j Σ_k exp(⟨v_i, s_jk⟩ / τ) )")
MODEL_SECTIONS = ("## How to load it", "## Zero-shot classification", "## Fine-tuning with LoRA", "## Training data",
                  "## Training objective", "## Evaluation", "## Intended use", "## Limitations", "## Citation")
DATASET_SECTIONS = ("## Subsets and fields", "## Statistics", "## How to load it", "## Curation",
                    "## Skipped samples", "## Privacy and licence", "## Citation")


def eval_results() -> list[EvalResult]:
    """The model-index of two evaluation records, through the project's leaderboard (as a real run makes it)."""
    from evaluate_suite.leaderboard import EvalRecord, published_metrics
    from model_cards import model_index

    records = [
        EvalRecord(MODEL_ID, "0123456789abcdef", "cataract-101-mini", "zero-shot", {"accuracy": 0.5312, "f1": 0.4171},
                   date="2025-01-01T00:00:00+00:00", extra={"split": "test"}),
        EvalRecord(MODEL_ID, "0123456789abcdef", "ophvl-mini:clips", "retrieval", {"t2v_R@1": 0.234, "v2t_R@1": 0.2},
                   date="2025-01-01T00:00:00+00:00"),
    ]
    return model_index(published_metrics(records, MODEL_ID))


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cards") / "ophclip-tiny"
    torch.manual_seed(0)
    OphCLIPModel(OphCLIPModelTester().get_config()).save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    pytest.importorskip("av")
    from datasets_ophvl import generate_ophvl_mini

    root = tmp_path_factory.mktemp("cards_mini") / "ophvl-mini"
    return root, generate_ophvl_mini(root, size="tiny", progress=False)


# -- model card --------------------------------------------------------------------------------------------------------


def test_model_card_has_sections_metadata_and_round_trips(model_folder, tmp_path):
    results = eval_results()
    card = build_model_card(model_folder, model_id=MODEL_ID, training_args=TRAINING_ARGS, data_stats=DATA_STATS,
                            eval_results=results, base_model="tester/ophclip-base",
                            limitations=["This checkpoint was trained on OphVL-mini, a synthetic dataset."])
    text = str(card)
    for section in MODEL_SECTIONS:
        assert section in text, section
    # How to load: remote code and the package.
    assert f'repo_id = "{MODEL_ID}"' in text and "trust_remote_code=True" in text and "pip install" in text
    # Training data and objective, with the exact retrieval-augmentation form and this run's K and lambda.
    assert f"datasets/{DATASET_ID}" in text and "| `clips` | 26 | 4 |" in text
    assert RETRIEVAL_EQUATION in text and "L_video = InfoNCE(title, video) + λ · L_ret" in text
    assert "K = 4 and λ = 0.5" in text and "clip:3,video:1" in text and "2 rows re-encoded" in text
    assert "hf_secret" not in text and "hub_token" not in text  # secrets never reach the card
    # Evaluation table with protocols, intended use, limitations, citation.
    assert "| Surgical phase recognition | cataract-101-mini | test | zero-shot | zero-shot accuracy (%) | 53.12 |" in text
    assert "**Zero-shot phase recognition**" in text and "**Text–video retrieval**" in text
    assert "not a medical device and must not be used for clinical decisions" in text
    assert "synthetic dataset" in text
    assert "arXiv 2411.15421" in text and "@inproceedings{hu2025ophclip" in text
    assert "OphCLIP: Hierarchical Retrieval-Augmented Learning for Ophthalmic Surgical Video-Language Pretraining" in text
    assert "35,062" in text  # parameters, from the safetensors header

    path = tmp_path / "README.md"
    card.save(path)
    data = ModelCard.load(path).data
    assert data.library_name == "transformers" and data.pipeline_tag == "video-classification"
    assert data.tags == ["video-text", "ophthalmology", "surgery", "clip"]
    assert data.license == "apache-2.0" and data.datasets == [DATASET_ID] and data.base_model == "tester/ophclip-base"
    assert data.model_name == "ophclip-tiny"
    assert data.eval_results == results and len(results) == 4
    # Same inputs, same bytes.
    again = build_model_card(model_folder, model_id=MODEL_ID, training_args=TRAINING_ARGS, data_stats=DATA_STATS,
                             eval_results=results, base_model="tester/ophclip-base",
                             limitations=["This checkpoint was trained on OphVL-mini, a synthetic dataset."])
    assert str(again) == text


def test_model_card_examples_run_against_a_local_folder(model_folder, tmp_path):
    card = build_model_card(model_folder, model_id=MODEL_ID)
    blocks = model_card_module.python_examples(card)
    assert len(blocks) == 3 and blocks[0].count("repo_id = ") == 1
    assert all("repo_id = " not in block for block in blocks[1:])  # one variable names the repository
    # In a process that cannot import the project: the examples need transformers, peft and the folder only.
    result = run_without_project(examples_for(card, model_folder), tmp_path)
    probs = json.loads(re.search(r"\{'incision'.*\}", result.stdout)[0].replace("'", '"'))
    assert len(probs) == 5 and abs(sum(probs.values()) - 1) < 0.01
    assert "trainable params" in result.stdout
    assert (tmp_path / "ophclip-lora" / "adapter_config.json").is_file()


def test_model_card_from_config_reads_run_options_and_refuses_bad_input(model_folder, tmp_path):
    config = OphCLIPModelTester(vision="clip").get_config(learnable_logit_scale=True)
    card = build_model_card(config, model_id="org/ophclip-vit")
    text = str(card)
    assert "ViT (2 layers, width 32, patch 8, 32 px)" in text and "(learned)" in text
    assert "No evaluation results were recorded" in text and "Parameters" not in text

    # training_args default to the folder's pretraining_config.json; the retrieval ablation says so.
    (tmp_path / "run").mkdir()
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "run" / name).write_bytes((model_folder / name).read_bytes())
    (tmp_path / "run" / "pretraining_config.json").write_text(json.dumps({**TRAINING_ARGS, "retrieval": False}))
    text = str(build_model_card(tmp_path / "run", model_id=MODEL_ID))
    assert "trained without retrieval augmentation" in text and "`learning_rate` | 5e-05" in text
    # A run of the detached form states that form's equation, not the encoded one.
    (tmp_path / "run" / "pretraining_config.json").write_text(json.dumps({**TRAINING_ARGS, "retrieval_form": "detached"}))
    text = str(build_model_card(tmp_path / "run", model_id=MODEL_ID))
    assert DETACHED_EQUATION in text and RETRIEVAL_EQUATION not in text

    with pytest.raises(TypeError, match="EvalResult"):
        build_model_card(config, model_id=MODEL_ID, eval_results=[{"accuracy": 1.0}])
    with pytest.raises(ValueError, match="model_id"):
        build_model_card(config, model_id="")
    with pytest.raises(FileNotFoundError):
        build_model_card(tmp_path / "nowhere", model_id=MODEL_ID)


def test_card_constants_agree_with_the_packages_they_describe():
    import modeling_ophclip
    from datasets_ophvl import format as ophvl_format

    assert model_card_module.LORA_TARGET_MODULES == modeling_ophclip.LORA_TARGET_MODULES
    assert ophvl_configs() == ophvl_format.configs_block()
    assert dataset_card_module.SUBSETS == ophvl_format.SUBSETS
    assert dataset_card_module.TITLE_SUMMARY_FIELDS == ophvl_format.TITLE_SUMMARY_FIELDS


# -- dataset card ------------------------------------------------------------------------------------------------------


CURATION = {
    "generator": {"name": "datasets_ophvl.mini", "version": 1, "seed": 0},
    "render": {"frame_size": 64, "clip_fps": 8, "video_fps": 2},
    "encode": "H.264, crf 10",
    "shard": {"clips": 4, "videos": 4, "silent": 4},
}


def _dataset_card(stats):
    return build_dataset_card(stats, repo_id=DATASET_ID, pretty_name="OphVL-mini (synthetic)", curation=CURATION,
                              skipped={"corrupt_video": 2, "empty_narration": 1}, license="apache-2.0",
                              license_note="Synthetic data, no third-party rights.",
                              privacy="Synthetic: no patient, surgeon or hospital data.")


def test_dataset_card_has_sections_metadata_and_round_trips(mini, tmp_path):
    root, summary = mini
    stats = folder_stats(root)
    for subset in ("clips", "videos", "silent"):
        assert stats[subset]["samples"] == summary[subset]["samples"]
        assert stats[subset]["shards"] == summary[subset]["shards"]
        assert stats[subset]["hours"] > 0 and stats[subset]["mean_words"] > 0
    card = _dataset_card(stats)
    text = str(card)
    for section in DATASET_SECTIONS:
        assert section in text, section
    assert f"| `clips` | {summary['clips']['samples']} | 4 |" in text
    assert "`title_summary` attributes: `surgery`" in text
    assert "2. **render**: `frame_size`: 64; `clip_fps`: 8; `video_fps`: 2" in text
    assert "| corrupt_video | 2 |" in text and "3 in total." in text
    assert "Synthetic: no patient" in text and "`apache-2.0`" in text and "@inproceedings{hu2025ophclip" in text

    path = tmp_path / "README.md"
    card.save(path)
    data = DatasetCard.load(path).data
    assert data.to_dict()["configs"] == ophvl_configs()
    assert data.license == "apache-2.0" and data.size_categories == ["n<1K"] and "ophthalmology" in data.tags
    # Byte-identical for the same inputs.
    _dataset_card(folder_stats(root)).save(tmp_path / "again.md")
    assert (tmp_path / "again.md").read_bytes() == path.read_bytes()
    assert "None." in build_dataset_card({}, repo_id=DATASET_ID).content  # no skipped samples


def test_dataset_card_examples_run_against_a_local_folder(mini, tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    pytest.importorskip("decord")
    root, _ = mini
    card = _dataset_card(folder_stats(root))
    card.save(root / "README.md")  # the folder now carries this card's configs: block
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__card__"}
    exec(compile(examples_for(card, str(root)), "dataset card examples", "exec"), namespace)
    assert namespace["example"]["frames"].shape[0] == 4
    assert namespace["sample"]["json"]["narration"]
