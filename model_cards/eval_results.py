"""Evaluation results in the Hub's two metadata formats: the `model-index` block of a model card and the newer
`.eval_results/*.yaml` files.

The input is a list of `PublishedMetric`: one metric of one benchmark and protocol, already in the unit it is
published in (percent for rates, as-is for ranks). Deciding which results of which checkpoint to publish, and in
which unit, is the evaluation suite's job (`evaluate_suite.leaderboard.published_metrics`); this module only writes
them in the Hub's formats, so it needs nothing from the rest of the project.

```python
>>> row = PublishedMetric(benchmark="cataract-101", protocol="zero-shot", task="phase", metric="accuracy",
...                       value=53.12, unit="percent", split="test")
>>> (result,) = model_index([row])
>>> result.task_type, result.dataset_type, result.metric_value, result.metric_name
('video-classification', 'cataract-101', 53.12, 'zero-shot accuracy (%)')
>>> task_id("linear-probe-10%", "f1"), file_stem("ophvl-clip_narration:test")
('linear-probe-10pct_f1', 'ophvl-clip_narration_test')

```
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


# Hub task types of the model-index block. huggingface_hub 2.4 checks none of them offline (only
# `ModelCard.validate`, which asks the Hub); these are Hub pipeline tags.
TASK_TYPES = {"phase": "video-classification", "instruments": "video-classification",
              "retrieval": "feature-extraction"}
TASK_NAMES = {"phase": "Surgical phase recognition", "instruments": "Surgical instrument recognition",
              "retrieval": "Text-video retrieval"}
UNITS = ("percent", "rank")


@dataclass(frozen=True)
class PublishedMetric:
    """One published metric: `task` is a key of `TASK_TYPES`; `value` is in `unit` (`"percent"` or `"rank"`);
    `date` is ISO-8601; the hashes name the checkpoint and the prompts the result was measured with."""

    benchmark: str
    protocol: str
    task: str
    metric: str
    value: float
    unit: str = "percent"
    split: str | None = None
    date: str | None = None
    weights_hash: str | None = None
    prompts_hash: str | None = None

    def __post_init__(self):
        if self.task not in TASK_TYPES:
            raise ValueError(f"task {self.task!r} of {self.benchmark} / {self.metric} is not one of "
                             f"{', '.join(TASK_TYPES)}")
        if self.unit not in UNITS:
            raise ValueError(f"unit {self.unit!r} of {self.benchmark} / {self.metric} is not one of "
                             f"{', '.join(UNITS)}")


def model_index(rows: Iterable[PublishedMetric], *, dataset_ids: Mapping[str, str] | None = None,
                source_url: str | None = None, source_name: str | None = None) -> list:
    """The `huggingface_hub.EvalResult`s of the rows, for `ModelCardData(eval_results=...)`: `task_type` from
    `TASK_TYPES`, `dataset_type` the benchmark's Hub id from `dataset_ids` (default: the benchmark name),
    `metric_config` the protocol and `metric_name` e.g. `"zero-shot accuracy (%)"`. The card groups results of one
    task and dataset under one `model-index` entry."""
    from huggingface_hub import EvalResult

    dataset_ids = dict(dataset_ids or {})
    return [
        EvalResult(
            task_type=TASK_TYPES[row.task],
            task_name=TASK_NAMES[row.task],
            dataset_type=dataset_ids.get(row.benchmark, row.benchmark),
            dataset_name=row.benchmark,
            dataset_split=row.split,
            metric_type=row.metric,
            metric_value=row.value,
            metric_name=f"{row.protocol} {row.metric}{' (%)' if row.unit == 'percent' else ''}",
            metric_config=row.protocol,
            source_url=source_url,
            source_name=source_name,
        )
        for row in rows
    ]


def model_index_yaml(rows: Iterable[PublishedMetric], model_name: str, **model_index_kwargs) -> str:
    """The YAML front matter (`model_name` + `model-index`) that `update_model_card` writes, as text."""
    from huggingface_hub import ModelCardData

    data = ModelCardData(model_name=model_name, eval_results=model_index(rows, **model_index_kwargs))
    return data.to_yaml() + "\n"


def update_model_card(card_path, rows: Iterable[PublishedMetric], model_name: str | None = None, *,
                      title: str | None = None, evaluation_markdown: str = "", **model_index_kwargs):
    """Write the `model-index` of the rows into the model card at `card_path` and return the `ModelCard`. An
    existing card keeps its text and other metadata (its `eval_results` are replaced); a missing one is created with
    the metadata, the heading `title` (e.g. the Hub id) and an evaluation section holding `evaluation_markdown`.
    `model_name` (required by `model-index`) defaults to the card's own, else to the last part of `title`."""
    from huggingface_hub import ModelCard, ModelCardData

    results = model_index(rows, **model_index_kwargs)
    path = Path(card_path)
    if path.is_file():
        card = ModelCard.load(path)
    else:
        card = ModelCard(f"---\n{ModelCardData().to_yaml()}\n---\n\n# {title or model_name or 'Model'}\n\n"
                         f"## Evaluation\n\n{evaluation_markdown}\n")
    card.data.model_name = model_name or card.data.model_name or str(title or "model").rstrip("/").split("/")[-1]
    card.data.eval_results = results
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return card


def task_id(protocol: str, metric: str) -> str:
    """The `.eval_results` task id of a protocol and metric.

    >>> task_id("zero-shot", "accuracy"), task_id("retrieval", "t2v_R@1")
    ('zero-shot_accuracy', 'retrieval_t2v_R1')
    """
    text = f"{protocol}_{metric}".replace("%", "pct").replace("@", "")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def file_stem(benchmark: str) -> str:
    """A file name for a benchmark: `"ophvl-clip_narration:test"` -> `"ophvl-clip_narration_test"`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", benchmark).strip("._") or "benchmark"


def eval_result_entries(rows: Iterable[PublishedMetric], *, dataset_ids: Mapping[str, str] | None = None,
                        source_url: str | None = None, source_name: str | None = None) -> list:
    """The `huggingface_hub.EvalResultEntry`s of the rows: `dataset_id` from `dataset_ids` (default: the benchmark
    name; the Hub links only real dataset ids), `task_id` from `task_id(protocol, metric)`, the row's value and date,
    and notes naming the protocol, unit, weights and prompts hashes."""
    from huggingface_hub import EvalResultEntry

    dataset_ids = dict(dataset_ids or {})
    entries = []
    for row in rows:
        notes = f"protocol {row.protocol}; {row.metric} in {row.unit}; weights {row.weights_hash}"
        if row.prompts_hash:
            notes += f"; prompts {row.prompts_hash}"
        entries.append(EvalResultEntry(
            dataset_id=dataset_ids.get(row.benchmark, row.benchmark),
            task_id=task_id(row.protocol, row.metric),
            value=row.value,
            date=row.date,
            source_url=source_url,
            source_name=source_name,
            notes=notes,
        ))
    return entries


def eval_results_yaml(rows: Iterable[PublishedMetric], **entry_kwargs) -> dict[str, str]:
    """`{file name: YAML text}` of the `.eval_results` files: one `<benchmark>.yaml` per benchmark (named after its
    Hub id's last part when `dataset_ids` gives one)."""
    import yaml
    from huggingface_hub import eval_result_entries_to_yaml

    dataset_ids = dict(entry_kwargs.get("dataset_ids") or {})
    by_file: dict[str, list] = {}
    for row in rows:
        name = file_stem(dataset_ids.get(row.benchmark, row.benchmark).split("/")[-1]) + ".yaml"
        by_file.setdefault(name, []).append(row)
    return {name: yaml.safe_dump(eval_result_entries_to_yaml(eval_result_entries(group, **entry_kwargs)),
                                 sort_keys=False, allow_unicode=True)
            for name, group in by_file.items()}


def write_eval_results(folder, rows: Iterable[PublishedMetric], **entry_kwargs) -> list[Path]:
    """Write `folder/.eval_results/<benchmark>.yaml` for the rows (see `eval_results_yaml`) and return the paths.
    Upload the folder with the model to show them on the Hub."""
    target = Path(folder) / ".eval_results"
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in eval_results_yaml(list(rows), **entry_kwargs).items():
        path = target / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


__all__ = [
    "PublishedMetric",
    "TASK_NAMES",
    "TASK_TYPES",
    "eval_result_entries",
    "eval_results_yaml",
    "file_stem",
    "model_index",
    "model_index_yaml",
    "task_id",
    "update_model_card",
    "write_eval_results",
]
