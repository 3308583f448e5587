"""model_cards: the OphCLIP model card, the OphVL dataset card, and publishing both to the Hub.

- `build_model_card(model_folder_or_config, model_id=..., training_args=..., data_stats=..., eval_results=...)`
  -> `huggingface_hub.ModelCard` (template `templates/model_card.md`).
- `build_dataset_card(stats, repo_id=..., curation=..., skipped=...)` -> `huggingface_hub.DatasetCard` (template
  `templates/dataset_card.md`); `folder_stats(folder)` counts an OphVL folder.
- `model_index(rows)`, `write_eval_results(folder, rows)`, `update_model_card(card_path, rows, ...)`: evaluation
  results in the Hub's `model-index` and `.eval_results/*.yaml` formats, from `PublishedMetric` rows (which
  `evaluate_suite.leaderboard.published_metrics` makes from result records; eval_results.py).
- `publish_model(folder, repo_id)` / `publish_dataset(folder, repo_id)`: validate the folder, then push it as one
  commit (`python -m model_cards.publish --help`).

The package imports nothing else from the project (only huggingface_hub, and transformers to validate a model
folder before publishing).
"""

import importlib

from .dataset_card import build_dataset_card, folder_stats, ophvl_configs
from .eval_results import (
    PublishedMetric,
    eval_result_entries,
    eval_results_yaml,
    model_index,
    model_index_yaml,
    update_model_card,
    write_eval_results,
)
from .model_card import build_model_card, examples_for, python_examples


# `model_cards.publish` is imported on first use, so that `python -m model_cards.publish` runs it fresh.
_PUBLISH = ("PublishError", "PublishPlan", "plan_dataset", "plan_model", "publish_dataset", "publish_model")


def __getattr__(name):
    if name in _PUBLISH:
        return getattr(importlib.import_module(".publish", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PublishError",
    "PublishPlan",
    "PublishedMetric",
    "build_dataset_card",
    "build_model_card",
    "eval_result_entries",
    "eval_results_yaml",
    "examples_for",
    "folder_stats",
    "model_index",
    "model_index_yaml",
    "ophvl_configs",
    "plan_dataset",
    "plan_model",
    "publish_dataset",
    "publish_model",
    "python_examples",
    "update_model_card",
    "write_eval_results",
]
