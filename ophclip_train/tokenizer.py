"""Train a BERT WordPiece tokenizer on the text of an OphVL dataset.

A model pretrained from scratch on a new corpus (OphVL-mini in the demo, or a user's own OphVL-format data in another
language or specialty) needs a vocabulary that covers it. This trains one with the `tokenizers` library on every
narration, title summary and title of the dataset (the videos are not decoded) and saves it as a BERT tokenizer
folder that `--tokenizer_name_or_path` of `train_accelerate.py` accepts:

```bash
python -m ophclip_train.tokenizer --data_path ophvl-mini --output_dir ophvl-mini-tokenizer --vocab_size 2000
```

```python
>>> from ophclip_train.tokenizer import ophvl_texts, train_wordpiece_tokenizer
>>> tokenizer = train_wordpiece_tokenizer(ophvl_texts("ophvl-mini"), vocab_size=2000)
>>> tokenizer.save_pretrained("ophvl-mini-tokenizer")
```

The tokenizer lowercases and strips accents by default, like the uncased BERT tokenizers (and like the predecessors,
which load Bio_ClinicalBERT's vocabulary lowercased).
"""

import argparse
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path


logger = logging.getLogger(__name__)

SUBSETS = ("clips", "videos", "silent")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def ophvl_texts(path, subsets: Iterable[str] = SUBSETS) -> Iterator[str]:
    """Every text of an OphVL dataset: clip narrations, video title summaries and titles, silent-video titles.

    Args:
        path: a local OphVL folder, `hf://datasets/<org>/<name>` or `<org>/<name>` (streamed; videos not decoded).
        subsets: the subsets read; a subset without shards is skipped with a log line.
    """
    from datasets_ophvl import OphVL
    from datasets_ophvl.streaming import resolve_path

    base = resolve_path(path)
    found = False
    for subset in subsets:
        try:  # the builder lists the shards when the stream is made
            ds = OphVL(config_name=subset, base_path=base).as_streaming_dataset(split="train")
        except FileNotFoundError as error:
            logger.info(f"tokenizer corpus: no {subset} shards ({error})")
            continue
        for example in ds.select_columns(["text", "title"]):
            found = True
            for text in (example["text"], example["title"]):
                if text:
                    yield text
    if not found:
        raise FileNotFoundError(f"no OphVL text under {path!r}: expected shards in data/<subset>/ for one of "
                                f"{tuple(subsets)}")


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 2,
                              lowercase: bool = True, model_max_length: int = 128):
    """Train a WordPiece vocabulary on `texts` and return it as a `transformers` BERT tokenizer.

    Args:
        texts: the corpus, one string per document.
        vocab_size: the largest vocabulary (a small corpus gives fewer tokens than this).
        min_frequency: a merge must occur this often to enter the vocabulary.
        lowercase: lowercase and strip accents (uncased BERT).
        model_max_length: the tokenizer's default truncation length.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size must be > {len(SPECIAL_TOKENS)} (the special tokens), got {vocab_size}")
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase or None)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                        special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix="##")
    count = 0

    def counted():
        nonlocal count
        for text in texts:
            count += 1
            yield text

    tokenizer.train_from_iterator(counted(), trainer=trainer)
    if count == 0:
        raise ValueError("the tokenizer corpus is empty")
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    logger.info(f"trained a WordPiece vocabulary of {tokenizer.get_vocab_size()} tokens on {count} texts")
    return BertTokenizerFast(tokenizer_object=tokenizer, do_lower_case=lowercase, model_max_length=model_max_length,
                             unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                             mask_token="[MASK]")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ophclip_train.tokenizer",
                                description="Train a BERT WordPiece tokenizer on the texts of an OphVL dataset.")
    p.add_argument("--data_path", required=True, help="OphVL: a local folder, hf://datasets/<org>/<name> or <org>/<name>")
    p.add_argument("--output_dir", required=True, help="where the tokenizer folder is written")
    p.add_argument("--vocab_size", type=int, default=2000, help="largest vocabulary size (default 2000)")
    p.add_argument("--min_frequency", type=int, default=2, help="minimum count of a merge (default 2)")
    p.add_argument("--cased", action="store_true", help="keep case and accents (default: lowercase, like uncased BERT)")
    p.add_argument("--model_max_length", type=int, default=128, help="default truncation length (default 128)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing tokenizer in --output_dir")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    out = Path(args.output_dir)
    if (out / "tokenizer_config.json").exists() and not args.overwrite:
        print(f"error: {out} already holds a tokenizer; pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        tokenizer = train_wordpiece_tokenizer(ophvl_texts(args.data_path), vocab_size=args.vocab_size,
                                              min_frequency=args.min_frequency, lowercase=not args.cased,
                                              model_max_length=args.model_max_length)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tokenizer.save_pretrained(out)
    print(f"wrote a {len(tokenizer)}-token WordPiece tokenizer to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
