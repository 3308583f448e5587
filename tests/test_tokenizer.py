"""`ophclip_train.tokenizer`: a WordPiece tokenizer trained on an OphVL dataset's text."""

import pytest

from ophclip_train import tokenizer as tok


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from datasets_ophvl import generate_ophvl_mini

    root = tmp_path_factory.mktemp("tok") / "mini"
    generate_ophvl_mini(root, size="tiny", progress=False)
    return root


def test_corpus_has_every_subset(mini):
    texts = list(tok.ophvl_texts(mini))
    joined = " ".join(texts).lower()
    assert len(texts) > 26  # every clip narration, plus video title summaries and titles, plus silent titles
    assert "surgery:" in joined  # a title summary
    assert "silent" in joined or "case" in joined  # a silent-video title


def test_trained_tokenizer_covers_the_corpus_and_round_trips(mini, tmp_path):
    from transformers import AutoTokenizer, BertTokenizer

    tokenizer = tok.train_wordpiece_tokenizer(tok.ophvl_texts(mini), vocab_size=600)
    assert 5 < len(tokenizer) <= 600
    encoded = tokenizer("Phacoemulsification with the phaco handpiece.")
    ids = encoded["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "phacoemulsification with the phaco handpiece."
    tokenizer.save_pretrained(tmp_path / "tok")
    for cls in (BertTokenizer, AutoTokenizer):
        reloaded = cls.from_pretrained(tmp_path / "tok")
        assert reloaded("Phacoemulsification with the phaco handpiece.")["input_ids"] == ids


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        tok.train_wordpiece_tokenizer(["a b c"], vocab_size=3)
    with pytest.raises(ValueError, match="empty"):
        tok.train_wordpiece_tokenizer([], vocab_size=100)
    with pytest.raises(FileNotFoundError, match="no OphVL text"):
        list(tok.ophvl_texts(tmp_path))


def test_command_line(mini, tmp_path, capsys):
    out = tmp_path / "tokenizer"
    assert tok.main(["--data_path", str(mini), "--output_dir", str(out), "--vocab_size", "500"]) == 0
    assert "WordPiece tokenizer" in capsys.readouterr().out
    assert tok.main(["--data_path", str(mini), "--output_dir", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert tok.main(["--data_path", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "t2")]) == 2
    assert "error:" in capsys.readouterr().err
