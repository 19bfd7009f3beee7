"""The model card cache: a checkpoint is read with transformers once, later runs read its card (no transformers,
no torch); any change to the checkpoint's non-weight files, or a broken card, reads it with transformers again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from attnx.engine.model import load_model, minilm_path
from attnx.engine.model_card import cached_card, card_key


@pytest.fixture()
def ckpt(tmp_path):
    """A copy of the packaged MiniLM checkpoint (its weights linked, not copied)."""
    path = tmp_path / "minilm"
    path.mkdir()
    for f in minilm_path().iterdir():
        if f.is_file():
            if f.suffix == ".safetensors":
                os.symlink(f, path / f.name)
            else:
                shutil.copy(f, path / f.name)
    return path


def _facts(loaded) -> tuple:  # noqa: ANN001
    return (loaded.num_layers, loaded.num_heads, loaded.family, loaded.token_types, loaded.config_dict,
            loaded.text_tokenizer, loaded.weights_sha256)


def test_a_second_load_reads_the_card_and_imports_neither_transformers_nor_torch(ckpt, tmp_path):
    env = {**os.environ, "ATTNX_CACHE": str(tmp_path / "cache")}
    code = (
        "import sys\n"
        "from attnx.engine.model import load_model\n"
        "m = load_model(sys.argv[1])\n"
        "print(m.num_layers, m.num_heads, m.family, m.text_tokenizer.class_name,"
        " 'transformers' in sys.modules, 'torch' in sys.modules)\n"
    )
    runs = [subprocess.run([sys.executable, "-c", code, str(ckpt)], capture_output=True, text=True, env=env,
                           check=True).stdout.split() for _ in range(2)]
    assert runs[0] == ["6", "12", "bert", "BertTokenizer", "True", "True"], runs[0]
    assert runs[1] == ["6", "12", "bert", "BertTokenizer", "False", "False"], runs[1]
    assert len(list((tmp_path / "cache" / "models").glob("*.json"))) == 1


def test_the_card_holds_what_transformers_reads(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path / "cache"))
    first = load_model(str(ckpt))  # read with transformers, card written
    again = load_model(str(ckpt))  # read from the card
    assert _facts(first) == _facts(again)
    assert again.config.num_hidden_layers == 6  # transformers' config, read when asked for
    assert again.tokenizer("a cat")["input_ids"] == again.text_tokenizer.ids("a cat")
    assert "model" not in again.__dict__  # nothing built


def test_a_changed_file_or_a_broken_card_reads_the_checkpoint_again(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path / "cache"))
    load_model(str(ckpt))
    key = card_key(ckpt)
    (card_file,) = (tmp_path / "cache" / "models").glob("*.json")
    assert cached_card(ckpt, lambda: pytest.fail("not cached"))[1]

    card_file.write_text(card_file.read_text()[:1000])  # truncated: read again, and written again
    assert load_model(str(ckpt)).num_layers == 6
    assert cached_card(ckpt, lambda: pytest.fail("not rewritten"))[1]

    config = (ckpt / "config.json").read_text()
    (ckpt / "config.json").write_text(config.replace('"num_hidden_layers": 6', '"num_hidden_layers": 5'))
    assert card_key(ckpt) != key
    assert load_model(str(ckpt)).num_layers == 5  # the edit is seen, not the old card

    key = card_key(ckpt)
    (ckpt / "tokenizer_config.json").write_text((ckpt / "tokenizer_config.json").read_text() + "\n")
    assert card_key(ckpt) != key  # any non-weight file is part of the key


def test_weights_are_not_part_of_the_key_but_their_digest_is_taken_each_load(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path / "cache"))
    before = load_model(str(ckpt))
    key = card_key(ckpt)
    (weights,) = ckpt.glob("*.safetensors")
    weights.unlink()
    weights.write_bytes(b"not the same weights")
    assert card_key(ckpt) == key
    assert load_model(str(ckpt)).weights_sha256 != before.weights_sha256


def test_a_cache_that_cannot_be_written_still_loads(ckpt, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ATTNX_CACHE", str(blocker / "cache"))  # its folder cannot be made, even by root
    assert load_model(str(ckpt)).num_layers == 6
    assert load_model(str(ckpt)).num_layers == 6  # read with transformers again, no error


def test_a_folder_with_an_unreadable_file_loads_without_the_cache(ckpt, tmp_path, monkeypatch):
    """Every non-weight file is hashed into the card's key; one that cannot be read (here a link to a file whose
    reads fail) means reading the checkpoint with transformers, as attnx did before cards, not an error."""
    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path / "cache"))
    os.symlink("/proc/self/mem", ckpt / "NOTES.txt")
    assert load_model(str(ckpt)).num_layers == 6
    assert not (tmp_path / "cache" / "models").exists()


def test_a_folder_that_changes_while_it_is_read_is_not_cached(ckpt, tmp_path, monkeypatch):
    """A card is written under the key computed before reading only if the files still hash to it after."""
    from attnx.engine.model import model_card

    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path / "first"))
    card = model_card(ckpt)[0]
    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path / "second"))

    def read_while_a_copy_lands():  # noqa: ANN202
        (ckpt / "README.md").write_text("a newer copy\n")
        return card

    assert cached_card(ckpt, read_while_a_copy_lands) == (card, False)
    assert not (tmp_path / "second").exists()
    assert cached_card(ckpt, lambda: card) == (card, False)  # unchanged now: written this time
    assert cached_card(ckpt, lambda: pytest.fail("not cached"))[1]


def test_the_config_records_the_path_as_this_load_spells_it(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path / "cache"))
    other = tmp_path / ".." / tmp_path.name / "minilm"
    assert load_model(str(ckpt)).config_dict["_name_or_path"] == str(ckpt)
    assert load_model(str(other)).config_dict["_name_or_path"] == str(other)  # the same card
    assert len(list((tmp_path / "cache" / "models").iterdir())) == 1
