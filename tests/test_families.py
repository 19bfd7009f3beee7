"""Every supported BERT-family encoder: attnx's stored maps equal transformers' eager attention.

Each family gets a tiny randomly initialised checkpoint saved with ``save_pretrained`` (safetensors) and
a tokenizer of its own kind built offline (WordPiece from MiniLM's vocabulary for BERT, DistilBERT and
ELECTRA; a byte-level BPE for RoBERTa; SentencePiece-style Unigram models for XLM-R and ALBERT), so
special tokens, segments and pair encoding come from each family's own tokenizer. The reference runs
each record alone through ``AutoModel`` with ``attn_implementation="eager"`` and
``output_attentions=True``; attnx runs them length-sorted and padded in batches.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.paths import SAMPLE

from attnx.engine.extract import ExtractOptions, extract
from attnx.engine.model import load_model, minilm_path
from attnx.errors import ModelError
from attnx.store import open_store

TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)
FAMILIES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "albert")


def _corpus() -> tuple[list[str], list[tuple[str, str]]]:
    singles = (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:24]
    pairs = [tuple(x.split("\t")) for x in (SAMPLE / "sample_pairs.tsv").read_text(encoding="utf-8").splitlines()[:12]]
    return singles, pairs


def _tokenizer(family: str):
    import transformers as tf
    from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer

    singles, pairs = _corpus()
    texts = singles + [t for p in pairs for t in p]
    if family in ("bert", "distilbert", "electra"):
        return tf.AutoTokenizer.from_pretrained(str(minilm_path()))
    if family == "roberta":
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(texts, vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        return tf.RobertaTokenizerFast(tokenizer_object=bpe._tokenizer)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if family == "xlm-roberta" else [
        "<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    uni = SentencePieceUnigramTokenizer()
    uni.train_from_iterator(texts, vocab_size=300, special_tokens=specials, unk_token="<unk>")
    if family == "xlm-roberta":
        return tf.XLMRobertaTokenizerFast(tokenizer_object=uni._tokenizer)
    from tokenizers.processors import TemplateProcessing

    vocab = uni._tokenizer.get_vocab()
    uni._tokenizer.post_processor = TemplateProcessing(  # ALBERT's own template, as albert-base-v2 ships it
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tf.AlbertTokenizerFast(tokenizer_object=uni._tokenizer)


def _config(family: str, vocab_size: int, pad_id: int):
    from transformers import AutoConfig

    if family == "distilbert":
        shape = dict(dim=32, n_layers=3, n_heads=4, hidden_dim=64)
    else:
        shape = dict(TINY)
        if family in ("electra", "albert"):
            shape["embedding_size"] = 16
        if family == "albert":
            shape["num_hidden_groups"] = 1  # one shared layer run at every depth
        if family in ("roberta", "xlm-roberta"):
            shape.update(max_position_embeddings=520, type_vocab_size=1)
    return AutoConfig.for_model(family, vocab_size=vocab_size, pad_token_id=pad_id, **shape)


@pytest.fixture(scope="module", params=FAMILIES)
def checkpoint(request, tmp_path_factory):
    from transformers import AutoModel

    family = request.param
    tok = _tokenizer(family)
    config = _config(family, len(tok), tok.pad_token_id)
    torch.manual_seed(7)
    model = AutoModel.from_config(config)
    path = tmp_path_factory.mktemp(family) / "model"
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    assert list(path.glob("*.safetensors")) and not list(path.glob("*.bin"))
    return family, path


def _reference(path, a: str, b: str | None, token_types: bool) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path), attn_implementation="eager").eval()
    enc = tok(a, b, return_tensors="pt", return_token_type_ids=token_types)
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    return torch.stack(out.attentions)[:, 0].numpy(), enc["input_ids"][0].numpy()


def test_family_parity(checkpoint, tmp_path):
    family, path = checkpoint
    loaded = load_model(str(path))
    assert loaded.family == family
    assert loaded.token_types == (family in ("bert", "electra", "albert"))
    singles, pairs = _corpus()
    (tmp_path / "s.txt").write_text("\n".join(singles) + "\n", encoding="utf-8")
    (tmp_path / "p.tsv").write_text("\n".join("\t".join(p) for p in pairs) + "\n", encoding="utf-8")
    for name, records in (("s.txt", [(s, None) for s in singles]), ("p.tsv", pairs)):
        out = tmp_path / f"{name}.zarr"
        extract(ExtractOptions(input=str(tmp_path / name), output=str(out), model=str(path), dtype="float32",
                               device="cpu", budget_bytes=200_000, backend="torch"))  # onnx: test_family_onnx_backend
        store = open_store(out)
        assert len(store) == len(records)
        assert store.n_layers == 3 and store.n_heads == 4
        worst = 0.0
        for i, (a, b) in enumerate(records):
            ref, ids = _reference(path, a, b, loaded.token_types)
            got = store.attention(i)
            assert got.shape == ref.shape, (family, i)
            # the same special tokens in the same places as the family's own tokenizer puts them
            assert [loaded.tokenizer.convert_ids_to_tokens(int(x)) for x in ids] == store.tokens(i)
            worst = max(worst, float(np.abs(got - ref).max()))
        assert worst <= 1e-5, f"{family} {name}: max abs error {worst:.3g}"


def test_family_pair_segments(checkpoint, tmp_path):
    """Segment A ends at the first separator after A's tokens (BERT: [SEP]; RoBERTa: the first </s>)."""
    from attnx.engine.sources import Record
    from attnx.engine.tokenize import WindowTokenizer

    family, path = checkpoint
    loaded = load_model(str(path))
    wt = WindowTokenizer(loaded.tokenizer, 64)
    window = wt([Record(id=0, line=1, text_a="the cat sat", text_b="on the mat")])
    ids = list(window.ids)
    ref = loaded.tokenizer("the cat sat", "on the mat")["input_ids"]
    assert ids == ref
    la = int(window.len_a[0])
    assert ids[la - 1] in loaded.tokenizer.all_special_ids
    assert list(window.segment) == [0] * la + [1] * (len(ids) - la)


def test_family_conllu_words_tokenize_like_running_text(checkpoint):
    """CoNLL-U forms are pre-split words; each family must still get its running-text pieces (RoBERTa's
    byte-level BPE needs the word's leading space), with every piece aligned to its word."""
    from attnx.engine.sources import Record, Words
    from attnx.engine.tokenize import WindowTokenizer

    family, path = checkpoint
    loaded = load_model(str(path))
    forms = ("The", "quick", "brown", "fox", "jumps", ".")
    rec = Record(id=0, line=1, text_a=" ".join(forms), text_b=None,
                 words=Words(forms=forms, heads=(3, 3, 3, 4, -1, 4), deprels=("det", "amod", "amod", "nsubj",
                                                                              "root", "punct")))
    window = WindowTokenizer(loaded.tokenizer, 64)([rec])
    assert list(window.ids) == loaded.tokenizer(" ".join(forms))["input_ids"]
    word = window.word[window.word >= 0]
    assert list(np.unique(word)) == list(range(len(forms))) and np.all(np.diff(word) >= 0)


def test_family_layer_subset(checkpoint, tmp_path):
    """--layers 1: the dropped layers above (or ALBERT's shared layer stopped early) change nothing."""
    family, path = checkpoint
    singles, _ = _corpus()
    (tmp_path / "s.txt").write_text("\n".join(singles[:6]) + "\n", encoding="utf-8")
    full, part = tmp_path / "full.zarr", tmp_path / "part.zarr"
    for out, layers in ((full, None), (part, (1,))):
        extract(ExtractOptions(input=str(tmp_path / "s.txt"), output=str(out), model=str(path), dtype="float32",
                               device="cpu", layers=layers, backend="torch"))
    for i in range(6):
        np.testing.assert_array_equal(open_store(part).attention(i)[0], open_store(full).attention(i)[1])


@pytest.mark.parametrize("family", ["bert", "roberta", "xlmr", "distilbert", "electra", "albert"])
def test_random_family_models(family):
    loaded = load_model(f"random-{family}-tiny")
    assert loaded.num_layers == 2 and loaded.num_heads == 4
    from attnx.engine.backends.base import collate
    from attnx.engine.backends.torch_backend import TorchBackend

    ids = np.array(loaded.tokenizer("a short sentence .")["input_ids"], np.int32)
    batch = collate(ids, np.array([0, len(ids)]), np.zeros(len(ids), np.int8), np.array([0]), 0)
    packed = TorchBackend(loaded, [0, 1], [0, 1, 2, 3], "float32").submit(batch).result()
    maps = packed.attn.reshape(2, 4, len(ids), len(ids))
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)


def test_deberta_refused(tmp_path):
    from transformers import AutoModel, DebertaV2Config

    config = DebertaV2Config(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                             intermediate_size=64)
    AutoModel.from_config(config).save_pretrained(tmp_path / "deb", safe_serialization=True)
    with pytest.raises(ModelError, match="disentangled attention"):
        load_model(str(tmp_path / "deb"))


def test_tokenizer_without_specials_refused(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from attnx.engine.tokenize import WindowTokenizer

    raw = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]")
    with pytest.raises(ModelError, match="adds no start token"):
        WindowTokenizer(tok, 32)


def test_unknown_random_name():
    with pytest.raises(ModelError, match="random-<family>-<size>"):
        load_model("random-gpt-tiny")


def test_family_onnx_backend(checkpoint, tmp_path, monkeypatch):
    """--backend onnx: the traced graph of each family gives the torch backend's maps."""
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'attnx[onnx]')")
    family, path = checkpoint
    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path / "cache"))
    _, pairs = _corpus()
    (tmp_path / "p.tsv").write_text("\n".join("\t".join(p) for p in pairs[:6]) + "\n", encoding="utf-8")
    stores = {}
    for backend in ("torch", "onnx"):
        stores[backend] = tmp_path / f"{backend}.zarr"
        extract(ExtractOptions(input=str(tmp_path / "p.tsv"), output=str(stores[backend]), model=str(path),
                               dtype="float32", device="cpu", backend=backend))
    for i in range(6):
        np.testing.assert_allclose(open_store(stores["onnx"]).attention(i), open_store(stores["torch"]).attention(i),
                                   atol=1e-5)


def _window_arrays(window) -> dict:  # noqa: ANN001 - a TokenizedWindow
    return {k: v for k, v in vars(window).items() if isinstance(v, np.ndarray)}


def _through_transformers(hf, like):  # noqa: ANN001, ANN202
    """A TextTokenizer whose encode goes through transformers' own ``__call__`` (its truncation, padding and
    special-token handling): the reference the engine's direct ``encode_batch`` calls are compared with."""
    import dataclasses

    class ThroughTransformers(type(like)):
        def encode(self, texts, pairs=None, special=True, pretokenized=False):  # noqa: ANN001, ANN202
            if not texts:
                return []
            enc = hf(list(texts), None if pairs is None else list(pairs), add_special_tokens=special,
                     is_split_into_words=pretokenized)
            return enc.encodings

    return ThroughTransformers(**{f.name: getattr(like, f.name) for f in dataclasses.fields(like) if f.init})


def test_family_card_tokenizer_encodes_as_transformers(checkpoint, tmp_path, monkeypatch):
    """The engine encodes with the checkpoint's cached card (:class:`TextTokenizer`: transformers' own pipeline
    and special tokens, read back from JSON), never transformers' tokenizer itself: the same ids, word ids,
    special-token template and truncation as transformers' ``__call__`` for single texts, pairs and pre-split
    words, and the same windows as a WindowTokenizer whose every encode goes through transformers' ``__call__``."""
    import json

    from transformers import AutoTokenizer

    from attnx.engine.model_card import cached_card
    from attnx.engine.sources import Record, Words
    from attnx.engine.tokenize import WindowTokenizer

    family, path = checkpoint
    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path))
    first = load_model(str(path))
    card, cached = cached_card(path, lambda: pytest.fail("the card was not cached by the first load"))
    assert cached and card.tokenizer == first.text_tokenizer
    text_tok = type(card.tokenizer).from_dict(json.loads(json.dumps(card.tokenizer.to_dict())))
    hf = AutoTokenizer.from_pretrained(str(path))
    singles, pairs = _corpus()
    for a in [*singles, "", "   "]:
        assert text_tok.ids(a) == hf(a)["input_ids"], a
        words = a.split()
        got = text_tok.encode([words], special=False, pretokenized=True)[0]
        want = hf(words, is_split_into_words=True, add_special_tokens=False)
        assert (got.ids, got.word_ids) == (want["input_ids"], want.word_ids(0)), a
    for a, b in pairs:
        assert text_tok.ids(a, b) == hf(a, b)["input_ids"], (a, b)
    # batched, as encode always calls it (transformers' one-example call takes an empty second text as none)
    assert text_tok.ids("a pair", "") == hf(["a pair"], [""])["input_ids"][0]
    assert (text_tok.cls_id, text_tok.sep_id, text_tok.pad_id, text_tok.size) == (
        hf.cls_token_id, hf.sep_token_id, hf.pad_token_id, len(hf))
    assert list(text_tok.special_ids) == hf.all_special_ids and text_tok.class_name == type(hf).__name__

    records = [Record(k, k + 1, a) for k, a in enumerate(singles[:8])]
    records += [Record(8 + k, 9 + k, a, b) for k, (a, b) in enumerate(pairs[:6])]
    conllu = [Record(k, k + 1, a, words=Words(tuple(a.split()), (-1,) * len(a.split()), ("dep",) * len(a.split())))
              for k, a in enumerate(singles[8:14])]
    reference = _through_transformers(hf, text_tok)
    for max_length in (512, 12):  # 12: most records are cut, pairs longest first
        for batch in (records, conllu):
            want = _window_arrays(WindowTokenizer(reference, max_length)(batch))
            got = _window_arrays(WindowTokenizer(text_tok, max_length)(batch))
            assert want.keys() == got.keys()
            for key in want:
                assert np.array_equal(want[key], got[key]), (family, max_length, key)


def test_split_special_tokens_is_kept(tmp_path, monkeypatch):
    """A tokenizer saved with ``split_special_tokens`` tokenizes "[MASK]" in the text as text; the card keeps it."""
    import json
    import shutil

    from transformers import AutoTokenizer

    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "split"
    shutil.copytree(minilm_path(), ckpt)
    config = json.loads((ckpt / "tokenizer_config.json").read_text())
    (ckpt / "tokenizer_config.json").write_text(json.dumps({**config, "split_special_tokens": True}))
    want = AutoTokenizer.from_pretrained(str(ckpt))("hello [MASK] world")["input_ids"]
    assert 103 not in want  # [MASK] split into pieces
    for _ in range(2):  # read with transformers, then from the card
        assert load_model(str(ckpt)).text_tokenizer.ids("hello [MASK] world") == want
    assert load_model("minilm").text_tokenizer.ids("hello [MASK] world") == [101, 7592, 103, 2088, 102]
