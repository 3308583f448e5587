"""The OphCLIP model card: `build_model_card` renders `templates/model_card.md` (a Jinja template, through
huggingface_hub's `ModelCard.from_template`) from the run's own model config, training options, data statistics and
evaluation results.

```python
card = build_model_card("out/final", model_id="org/ophclip-base", training_args=json.load(open(".../pretraining_config.json")),
                        data_stats={"clips": {"samples": 375000}},
                        eval_results=model_index(published_metrics(records, "org/ophclip-base")))
card.save("out/final/README.md")
```

The card's metadata (`library_name`, `pipeline_tag`, `tags`, `license`, `datasets`, `base_model` and the
`model-index` built from `eval_results`) is `ModelCardData`, so it round-trips through `ModelCard.load`. Its Python
examples run as written: every one of them names the repository through the single variable `repo_id` of the first
example, so pointing that variable at a local folder runs them offline (the tests do).

This module imports nothing from the rest of the project: the model is read from its `config.json` (or a config
object's `to_dict()`), and evaluation results are `huggingface_hub.EvalResult`s (e.g. from `eval_results.model_index`
of the rows that `evaluate_suite.leaderboard.published_metrics` makes).
"""

import json
import math
import os
import re
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData


TEMPLATES = Path(__file__).resolve().parent / "templates"
MODEL_CARD_TEMPLATE = TEMPLATES / "model_card.md"

PAPER_TITLE = ("OphCLIP: Hierarchical Retrieval-Augmented Learning for Ophthalmic Surgical Video-Language "
               "Pretraining")
ARXIV_ID = "2411.15421"
ARXIV_URL = f"https://arxiv.org/abs/{ARXIV_ID}"
CITATION = """\
@inproceedings{hu2025ophclip,
  title     = {OphCLIP: Hierarchical Retrieval-Augmented Learning for Ophthalmic Surgical Video-Language Pretraining},
  author    = {Hu, Ming and Yuan, Kun and Shen, Yaling and Tang, Feilong and Xu, Xiaohao and Zhou, Lin and Li, Wei and
               Chen, Ying and Xu, Zhongxing and Peng, Zelin and others},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages     = {19838--19849},
  year      = {2025},
  eprint    = {2411.15421},
  archivePrefix = {arXiv}
}"""

TAGS = ("video-text", "ophthalmology", "surgery", "clip")
# The Hub has no zero-shot *video* task. A dual encoder that classifies videos against text prompts is listed under
# video classification on the Hub (as X-CLIP is); "zero-shot-classification" would announce a text (NLI) model.
PIPELINE_TAG = "video-classification"
LICENSE = "apache-2.0"
PIP_INSTALL = "pip install torch==2.13.0  # the CPU or CUDA build you want, first\npip install ophclip  # or, from a checkout of the project: pip install -e ."

# Same regex as `modeling_ophclip.LORA_TARGET_MODULES` (a test checks that they agree): the separate q/k/v projections
# of the BERT text tower and of a CLIP-ViT vision tower.
LORA_TARGET_MODULES = (r".*(text_model\.encoder\.layer\.\d+\.attention\.self\.(query|key|value)"
                       r"|vision_model\.encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj))")

PROTOCOLS = {
    "zero-shot": "**Zero-shot phase recognition**: frames sampled at a fixed rate (1 fps unless noted), each "
                 "classified by the argmax of softmax(logit_scale · cos(frame, class-prompt embedding)); accuracy and "
                 "macro-F1 computed per video, then averaged over the test videos. **Zero-shot instrument "
                 "recognition** (mAP/FPR): an independent presence probability per instrument and frame from a "
                 "class prompt against its 'absent' prompt; mAP over instruments and the false-positive rate at "
                 "probability 0.5.",
    "linear-probe": "**Linear probing**: frozen frame features, a standardised logistic regression trained on 1%, 10% "
                    "or 100% of the training videos (drawn by video with fixed seeds, averaged over seeds), scored "
                    "on the test split.",
    "retrieval": "**Text–video retrieval**: clips held out from training, each embedded from uniformly sampled "
                 "frames; cosine similarity to every text; recall at 1/5/10 (%) and median rank in both directions "
                 "(t2v: text to video, v2t: video to text).",
}

# Training options shown in the hyper-parameter table; options whose value is None, and secrets, are left out.
_SECRET = re.compile(r"(^|_)(token|secret|password|api_key)($|_)", re.IGNORECASE)
_HUB_ID = re.compile(r"^(?:hf://datasets/)?([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*?)(?:@[\w./-]+)?/?$")


# ---------------------------------------------------------------------------------------------------------------------
# Reading the model


def model_config_dict(model) -> dict:
    """The model's config as a dict: from a folder's `config.json`, a `PretrainedConfig` (`to_dict()`) or a dict."""
    if isinstance(model, Mapping):
        return dict(model)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no config.json in {str(model)!r}: pass a saved model folder or a config")
        return json.loads(path.read_text(encoding="utf-8"))
    if hasattr(model, "to_dict"):
        return model.to_dict()
    raise TypeError(f"expected a model folder, a config or a dict, got {type(model).__name__}")


def count_parameters(folder) -> int | None:
    """Number of values in a folder's `*.safetensors` files, read from their headers (None without such files)."""
    files = sorted(Path(folder).glob("*.safetensors")) if Path(folder).is_dir() else []
    if not files:
        return None
    total = 0
    for file in files:
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, entry in header.items():
            if name != "__metadata__":
                total += math.prod(entry["shape"])
    return total


def _tower(config: dict, key: str) -> str:
    sub = config.get(key) or {}
    kind = sub.get("model_type", "?")
    if kind == "resnet":
        depths = sub.get("depths") or []
        return f"ResNet ({sum(depths)} blocks in {len(depths)} stages, widths {sub.get('hidden_sizes')})"
    if kind in ("clip_vision_model", "clip"):
        return (f"ViT ({sub.get('num_hidden_layers')} layers, width {sub.get('hidden_size')}, patch "
                f"{sub.get('patch_size')}, {sub.get('image_size')} px)")
    if kind == "bert":
        return (f"BERT ({sub.get('num_hidden_layers')} layers, width {sub.get('hidden_size')}, vocabulary "
                f"{sub.get('vocab_size')})")
    return kind


def architecture_rows(config: dict, parameters: int | None = None) -> str:
    """Markdown table rows describing the model (for the template's `architecture_rows`)."""
    scale = config.get("logit_scale_init_value")
    temperature = f"τ = {math.exp(-scale):.3g}" if isinstance(scale, (int, float)) else "?"
    temperature += " (learned)" if config.get("learnable_logit_scale") else " (fixed)"
    rows = [
        ("Video encoder", f"{_tower(config, 'vision_config')}, frame embeddings pooled by "
                          f"{config.get('frame_pooling', 'mean')} over time"),
        ("Text encoder", f"{_tower(config, 'text_config')}, `{config.get('text_pooling', '?')}` pooling"),
        ("Joint embedding", f"{config.get('projection_dim', '?')}-d, temperature {temperature}"),
    ]
    if parameters is not None:
        rows.append(("Parameters", f"{parameters / 1e6:.2f} M" if parameters >= 1e5 else f"{parameters:,}"))
    rows.append(("Paper", f"[{PAPER_TITLE}]({ARXIV_URL}) (ICCV 2025)"))
    return "\n".join(f"| {name} | {value} |" for name, value in rows)


# ---------------------------------------------------------------------------------------------------------------------
# Sections


def _cell(value) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple, dict)):
        text = json.dumps(value, sort_keys=True)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def hub_dataset_id(path) -> str | None:
    """`org/name` of a Hub dataset reference (`org/name`, `hf://datasets/org/name[@rev]`), None for anything else
    (a local folder that exists is not a Hub id)."""
    if not isinstance(path, str) or os.path.exists(path):
        return None
    match = _HUB_ID.match(path)
    return match[1] if match else None


def training_data_section(data_stats: Mapping | None, datasets: Sequence[str], training_args: Mapping) -> str:
    """Where the model was trained and on how much: per-subset statistics as a table, other entries as a list."""
    lines = []
    names = [f"[`{d}`](https://huggingface.co/datasets/{d})" for d in datasets]
    source = training_args.get("data_path")
    if names:
        lines.append("Pretrained on " + ", ".join(names) + " (OphVL format: WebDataset shards of narrated clips, "
                     "titled whole videos and silent videos).")
    elif source:
        lines.append(f"Pretrained on OphVL-format data from `{source}` (narrated clips, titled whole videos and "
                     "silent videos).")
    else:
        lines.append("Pretrained on OphVL-format data: narrated clips, titled whole videos and silent videos.")
    stats = dict(data_stats or {})
    tables = {k: v for k, v in stats.items() if isinstance(v, Mapping)}
    scalars = {k: v for k, v in stats.items() if not isinstance(v, Mapping)}
    if tables:
        columns = []
        for row in tables.values():
            columns += [c for c in row if c not in columns and not isinstance(row[c], Mapping)]
        lines += ["", "| subset | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        for name, row in tables.items():
            lines.append(f"| `{name}` | " + " | ".join(_cell(row.get(c, "–")) for c in columns) + " |")
    if scalars:
        lines.append("")
        lines += [f"- {name}: {_cell(value)}" for name, value in scalars.items()]
    lines += ["", "- `clips`: short clips with their narration (clip level); `videos`: whole procedures with a "
                  "structured title summary (video level); `silent`: procedures without narration, used only as the "
                  "retrieval knowledge base."]
    return "\n".join(lines)


def hyperparameters_section(training_args: Mapping) -> str:
    rows = [(k, v) for k, v in sorted(training_args.items()) if v is not None and not _SECRET.search(k)]
    if not rows:
        return ""
    table = "\n".join(f"| `{k}` | {_cell(v)} |" for k, v in rows)
    return ("<details>\n<summary>All training options of this run</summary>\n\n| option | value |\n|---|---|\n"
            f"{table}\n\n</details>")


def _objective_notes(training_args: Mapping, config: dict) -> dict:
    args = training_args
    schedule = args.get("schedule")
    scale = config.get("logit_scale_init_value")
    learnable = args.get("learnable_logit_scale")
    learnable = config.get("learnable_logit_scale") if learnable is None else learnable
    temperature = "1/τ = exp(logit_scale)"
    if isinstance(scale, (int, float)):
        temperature += f", initially τ = {math.exp(-scale):.3g}"
    temperature += ", learned" if learnable else ", fixed"
    weight = args.get("simsiam_weight") or 0
    simsiam = f"; plus a SimSiam term (weight {_cell(weight)}) on two augmented views of each clip" if weight else ""
    refresh = []
    if args.get("bank_refresh_rows_per_step"):
        refresh.append(f"{args['bank_refresh_rows_per_step']} rows re-encoded with the current vision tower after "
                       "every step")
    if args.get("bank_full_refresh_every"):
        refresh.append(f"the whole bank re-encoded every {args['bank_full_refresh_every']} steps")
    bank = "built with the model being trained and " + (" and ".join(refresh) if refresh else "kept as built")
    if args.get("retrieval") is False:
        retrieval = ("**This checkpoint was trained without retrieval augmentation** (the ablation: "
                     "`retrieval = false`, λ = 0).")
    elif args:
        pairing = (" **Pairing: random** (the ablation: each title gets K random silent videos instead of its "
                   "retrieved ones)." if args.get("retrieval_pairing") == "random" else "")
        retrieval = (f"In this run K = {_cell(args.get('retrieval_k', '?'))} and λ = "
                     f"{_cell(args.get('retrieval_weight', '?'))}." + pairing)
    else:
        retrieval = ""
    return {"schedule_note": f" (`{schedule}`: clip and video steps in this order, repeated)" if schedule else "",
            "temperature_note": temperature, "simsiam_note": simsiam, "bank_note": bank,
            "retrieval_loss": RETRIEVAL_FORMS[_retrieval_form(args)], "retrieval_settings": retrieval}


# The two forms of the retrieval term (`ophclip_train.objectives.losses`), as the card states them.
RETRIEVAL_FORMS = {
    "encoded": (
        "*Encoded form.* Of each title's K retrieved silent videos, some (`retrieval_encode_per_title`) are decoded and "
        "encoded by the vision tower being trained, with gradients, and are extra positives of the title that "
        "retrieved them, in both directions:\n\n"
        "```\nL_ret = ½ · ( −1/|I| Σ_i log( Σ_{c∈P_i} exp(⟨w_i, s_c⟩ / τ) / Σ_{c∈C} exp(⟨w_i, s_c⟩ / τ) )\n"
        "              −1/|J| Σ_c log( Σ_{i: c∈P_i} exp(⟨w_i, s_c⟩ / τ) / Σ_i exp(⟨w_i, s_c⟩ / τ) ) )\n```\n\n"
        "(w_i the title embeddings of the global batch, s_c the encoded silent videos C of the step, P_i those title i "
        "retrieved, I the titles and J the silent videos that have a positive; a silent video encoded twice counts "
        "once). The gradient reaches the vision tower through the silent frames, so footage that only silent videos "
        "show shapes the encoder."
    ),
    "detached": (
        "*Detached form.* The retrieved bank vectors s_i1 … s_iK (no gradient) are positives of the narrated video: "
        "the video embedding v_i must be closer to the silent videos retrieved for its own title than to those "
        "retrieved for the other titles of the batch:\n\n"
        "```\nL_ret = −1/B Σ_i log( Σ_k exp(⟨v_i, s_ik⟩ / τ) / Σ_j Σ_k exp(⟨v_i, s_jk⟩ / τ) )\n```\n\n"
        "(all embeddings L2-normalised, i, j over the B videos of the global batch, k = 1 … K; a multi-positive "
        "InfoNCE). Silent frames never pass through the vision tower with gradients in this form."
    ),
}


def _retrieval_form(args: Mapping) -> str:
    """The form a run trained with; runs from before the option existed trained the detached form."""
    if args.get("retrieval_form") in RETRIEVAL_FORMS:
        return args["retrieval_form"]
    return "detached" if args else "encoded"


def evaluation_section(eval_results: Sequence[EvalResult], protocol: str | None = None) -> str:
    """The evaluation table (one row per result) and the protocols that produced it."""
    if not eval_results:
        return "No evaluation results were recorded for this checkpoint."
    lines = ["| task | dataset | split | protocol | metric | value |", "|---|---|---|---|---|---:|"]
    for r in eval_results:
        dataset = r.dataset_name or r.dataset_type
        if r.dataset_config:
            dataset += f" ({r.dataset_config})"
        lines.append("| " + " | ".join(_cell(v) for v in (
            r.task_name or r.task_type, dataset, r.dataset_split or "–", r.metric_config or "–",
            r.metric_name or r.metric_type, r.metric_value)) + " |")
    configs = " ".join(str(r.metric_config or "") for r in eval_results)
    notes = [text for key, text in PROTOCOLS.items() if key in configs]
    if protocol:
        notes.append(protocol)
    lines += ["", "Rates are in percent, ranks as-is. The same results are in this card's `model-index` metadata and "
                  "in `.eval_results/*.yaml` when present."]
    if notes:
        lines += ["", "Protocols:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# The card


def build_model_card(
    model,
    *,
    model_id: str,
    training_args: Mapping | None = None,
    data_stats: Mapping | None = None,
    eval_results: Sequence[EvalResult] | None = None,
    base_model: str | list[str] | None = None,
    datasets: Sequence[str] | None = None,
    license: str = LICENSE,
    model_name: str | None = None,
    model_summary: str | None = None,
    eval_protocol: str | None = None,
    limitations: Sequence[str] = (),
    pipeline_tag: str = PIPELINE_TAG,
    tags: Sequence[str] = (),
    pip_install: str = PIP_INSTALL,
    template_path=MODEL_CARD_TEMPLATE,
) -> ModelCard:
    """The model card of an OphCLIP checkpoint.

    Args:
        model: the saved model folder (its `config.json`; its `*.safetensors` give the parameter count), a config
            object or a config dict.
        model_id: the Hub repository (`org/name`) the card describes; it is the `repo_id` of the examples.
        training_args: the run's options (flat, as `train_accelerate.py` writes them to `pretraining_config.json`);
            read from `<model>/pretraining_config.json` when None and that file exists.
        data_stats: training-data statistics: `{subset: {stat: value}}` rows and/or `{name: value}` entries.
        eval_results: `huggingface_hub.EvalResult`s (e.g. `model_cards.model_index(rows)`): they
            become the `model-index` metadata and the evaluation table.
        base_model: the checkpoint(s) this one was trained from (`base_model` metadata).
        datasets: Hub dataset ids (`datasets` metadata); default: the run's `data_path` when it is a Hub id.
        license, model_name, pipeline_tag, tags: metadata (`tags` are added to `TAGS`).
        model_summary: the card's first paragraph.
        eval_protocol: extra text for the evaluation section.
        limitations: extra bullet points for the limitations section (e.g. "trained on synthetic data").
        pip_install: the shell lines that install the project.
        template_path: the Jinja template.

    Returns:
        A `huggingface_hub.ModelCard`; `card.save(folder / "README.md")`.
    """
    if not model_id or not isinstance(model_id, str):
        raise ValueError("model_id (the Hub repository, org/name) is required: it is the repo_id of the examples")
    config = model_config_dict(model)
    is_folder = isinstance(model, (str, os.PathLike)) and Path(model).is_dir()
    if training_args is None and is_folder and (Path(model) / "pretraining_config.json").is_file():
        training_args = json.loads((Path(model) / "pretraining_config.json").read_text(encoding="utf-8"))
    training_args = dict(training_args or {})
    eval_results = list(eval_results or [])
    for result in eval_results:
        if not isinstance(result, EvalResult):
            raise TypeError(f"eval_results must be huggingface_hub.EvalResult objects, got {type(result).__name__} "
                            "(make them with model_cards.model_index(published_metrics(records, model_id)))")
    if datasets is None:
        found = hub_dataset_id(training_args.get("data_path"))
        datasets = [found] if found else []
    name = model_name or model_id.rstrip("/").split("/")[-1]
    card_data = ModelCardData(
        model_name=name,
        license=license,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=list(dict.fromkeys([*TAGS, *tags])),
        datasets=list(datasets) or None,
        base_model=base_model,
        eval_results=eval_results or None,
    )
    extra = "\n".join(f"- {item}" for item in limitations)
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        title=name,
        repo_id=model_id,
        model_summary=model_summary or f"`{model_id}` is an OphCLIP checkpoint: a video–language model for "
                                       "ophthalmic surgery.",
        paper_link=f"[arXiv {ARXIV_ID}]({ARXIV_URL}), ICCV 2025",
        architecture_rows=architecture_rows(config, count_parameters(model) if is_folder else None),
        pip_install=pip_install,
        lora_target_modules=LORA_TARGET_MODULES,
        training_data=training_data_section(data_stats, list(datasets), training_args),
        hyperparameters=hyperparameters_section(training_args),
        evaluation=evaluation_section(eval_results, eval_protocol),
        limitations=extra,
        citation=CITATION,
        **_objective_notes(training_args, config),
    )


def python_examples(card) -> list[str]:
    """The card's ```python blocks, in order (`card`: a `ModelCard`, its text or a README path)."""
    text = card.content if hasattr(card, "content") else str(card)
    if not hasattr(card, "content") and os.path.isfile(text):
        text = Path(text).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def examples_for(card, repo_or_folder: str) -> str:
    """The card's Python examples as one script, with the `repo_id` of the examples set to `repo_or_folder` (a local
    model folder runs them offline)."""
    script = "\n".join(python_examples(card))
    script, count = re.subn(r'^repo_id = ".*"$', f"repo_id = {str(repo_or_folder)!r}", script, flags=re.M)
    if count != 1:
        raise ValueError(f"expected one `repo_id = ...` line in the card's examples, found {count}")
    return script


__all__ = [
    "ARXIV_ID",
    "CITATION",
    "LORA_TARGET_MODULES",
    "MODEL_CARD_TEMPLATE",
    "PAPER_TITLE",
    "PIPELINE_TAG",
    "TAGS",
    "architecture_rows",
    "build_model_card",
    "count_parameters",
    "evaluation_section",
    "examples_for",
    "hub_dataset_id",
    "model_config_dict",
    "python_examples",
]
