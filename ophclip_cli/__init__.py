"""The `ophclip` command: zero-shot phase timelines, embeddings, moment search, saliency maps and conversion.

    ophclip zero-shot VIDEO --model DIR --labels "a,b,c" --output preds.csv [--timeline timeline.png]
    ophclip embed VIDEO... --model DIR --output embeddings.safetensors
    ophclip search "the surgeon tears the capsule" --videos FOLDER --model DIR [--top-k 5]
    ophclip attention VIDEO_OR_IMAGE --model DIR --text "..." --output-dir DIR
    ophclip convert --checkpoint surgvlp.pth --output DIR [...]

Every error is reported as one line on stderr (`ophclip <command>: error: ...`) with exit status 1; nothing is
overwritten unless `--overwrite` is given. torch, transformers, matplotlib and faiss are imported only when a
command needs them, so `--help` is fast. This package sits above the libraries (`modeling_ophclip`, `evaluate_suite`), one module per
job; `evaluate_suite` is imported only for `--benchmark`.
"""

from .main import build_parser, main


__all__ = ["build_parser", "main"]
