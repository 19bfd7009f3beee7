"""A seeded corpus of N distinct, realistic English sentences spliced from the real ones in ../shared/data.

For the million-sentence soak (benchmarks/bench_million.py): attnx must be run over 10^6 *distinct* sentences
(repeated sentences give identical maps, which would flatter the codec), and the shared data holds about
27,000. Every real sentence of UD EWT (train, dev), UD GUM (dev) and GLUE QNLI (questions and sentences) is cut
at its clause boundaries: after a comma, semicolon or colon, or before a coordinating or subordinating
conjunction (and, but, or, so, because, while, which, ...). A generated sentence is the *head* of one real
sentence (its start up to a cut) followed by the *tail* of another (from a cut to its end), e.g. "The MoI in
Iraq is equivalent to the US FBI," + "but it was raining.".

Lengths follow UD EWT train's: each sentence's target word count is drawn from EWT train's word counts, and a
(head, tail) pair is drawn among those whose words add up to it (the nearest achievable length when none
does; a real sentence of that length, each at most once, when every splice draw is already taken). Words are
whitespace-separated tokens. A sentence already emitted is never emitted again (tracked by a 64-bit hash of
its text; a hash collision only ever drops a sentence, never repeats one).

Deterministic: the same --seed, --n and input files give byte-identical output (Python's ``random.Random``
with an integer seed is stable across versions; inputs are read in a fixed order). The text is written to
--output only, which must lie outside this repository; a manifest (seed, inputs' sha256, output sha256,
length quantiles against EWT's) goes to OUTPUT.json. --report adds wordpiece-length quantiles with the
packaged MiniLM tokenizer.

Usage::

    python tools/make_corpus.py --n 1000000 --seed 1 --output /tmp/million.txt [--report]
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import random
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
# read in this order (the order is part of the seed's meaning)
SOURCES = (
    "ud_english_ewt/train/sentences.txt",
    "ud_english_ewt/dev/sentences.txt",
    "ud_english_gum/dev/sentences.txt",
    "glue_qnli_dev/sentences.txt",
)
LENGTHS_FROM = "ud_english_ewt/train/sentences.txt"
CONJUNCTIONS = frozenset(
    "and but or so yet because while whereas although though which who whom whose when where if unless since "
    "until after before".split()
)
_PUNCT_CUT = re.compile(r"[,;:]$")
SPLICE_TRIES = 20
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def read_sentences(data: Path, rel: str) -> list[str]:
    """The non-blank lines of one sentences.txt, whitespace-normalised."""
    lines = (data / rel).read_text(encoding="utf-8").splitlines()
    return [" ".join(line.split()) for line in lines if line.strip()]


def cuts(words: list[str]) -> list[int]:
    """Word indices ``k`` (1 <= k < len) where a sentence splits into ``words[:k]`` and ``words[k:]``: after a
    word ending in , ; : or before a conjunction (not at the sentence's first word)."""
    out = []
    for k in range(1, len(words)):
        if _PUNCT_CUT.search(words[k - 1]) or words[k].lower() in CONJUNCTIONS:
            out.append(k)
    return out


class Pieces:
    """Heads and tails of every real sentence, indexed by word count: ``heads[n]`` is a list of (sentence id,
    text) of n words."""

    def __init__(self, sentences: list[str]) -> None:
        self.heads: dict[int, list[tuple[int, str]]] = {}
        self.tails: dict[int, list[tuple[int, str]]] = {}
        self.whole: dict[int, list[str]] = {}
        for sid, sentence in enumerate(sentences):
            words = sentence.split()
            self.whole.setdefault(len(words), []).append(sentence)
            for k in cuts(words):
                self.heads.setdefault(k, []).append((sid, " ".join(words[:k])))
                self.tails.setdefault(len(words) - k, []).append((sid, " ".join(words[k:])))
        # splits (head words a) available for each total length
        self.splits: dict[int, list[int]] = {}
        for a in self.heads:
            for b in self.tails:
                self.splits.setdefault(a + b, []).append(a)
        for a_list in self.splits.values():
            a_list.sort()
        self.lengths = sorted(self.splits)

    def nearest(self, length: int) -> int:
        """The achievable splice length closest to ``length`` (ties: the shorter)."""
        i = bisect.bisect_left(self.lengths, length)
        near = [x for x in self.lengths[max(0, i - 1) : i + 1]]
        return min(near, key=lambda x: (abs(x - length), x))


def _key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def generate(n: int, seed: int, data: Path = DATA) -> Iterator[str]:
    """``n`` distinct sentences, deterministic in (``n``, ``seed``, the input files). Raises ValueError when the
    inputs cannot give ``n`` distinct sentences."""
    sentences = [s for rel in SOURCES for s in read_sentences(data, rel)]
    targets = [len(s.split()) for s in read_sentences(data, LENGTHS_FROM)]
    pieces = Pieces(sentences)
    rng = random.Random(seed)
    # real sentences as a last resort, each used at most once, in seeded order per length
    unused = {length: rng.sample(group, len(group)) for length, group in sorted(pieces.whole.items())}
    seen: set[int] = set()
    made = 0
    stuck = 0
    while made < n:
        target = rng.choice(targets)
        text = _splice(pieces, rng, pieces.nearest(target), seen)
        if text is None and unused.get(target):
            while unused[target] and text is None:
                candidate = unused[target].pop()
                text = None if _key(candidate) in seen else candidate
        if text is None:
            stuck += 1
            if stuck > 1000 * max(1, n // 1000):
                raise ValueError(f"cannot make {n} distinct sentences from {data} (stuck after {made})")
            continue
        seen.add(_key(text))
        made += 1
        yield text


def _splice(pieces: Pieces, rng: random.Random, length: int, seen: set[int]) -> str | None:
    """A head + tail of ``length`` words from two different real sentences, not yet in ``seen``."""
    splits = pieces.splits[length]
    for _ in range(SPLICE_TRIES):
        a = rng.choice(splits)
        hid, head = rng.choice(pieces.heads[a])
        tid, tail = rng.choice(pieces.tails[length - a])
        if hid == tid:
            continue
        text = f"{head} {tail}"
        if _key(text) not in seen:
            return text
    return None


def quantiles(values: list[int], qs: tuple[float, ...] = QUANTILES) -> dict[str, float]:
    """Nearest-rank quantiles plus the mean, keyed "p50" etc."""
    ordered = sorted(values)
    out = {f"p{round(q * 100)}": float(ordered[min(len(ordered) - 1, int(q * len(ordered)))]) for q in qs}
    out["mean"] = round(sum(ordered) / len(ordered), 2)
    return out


def wordpiece_lengths(texts: list[str]) -> list[int]:
    """Wordpieces per text with the packaged MiniLM tokenizer, [CLS] and [SEP] included."""
    from transformers import AutoTokenizer

    from attnx.engine.model import minilm_path

    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    return [len(ids) for ids in tok(texts, add_special_tokens=True)["input_ids"]]


def _inside_repo(path: Path) -> bool:
    try:
        path.resolve().relative_to(ROOT.resolve())
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write N distinct English sentences spliced (head of one real sentence + tail of another, "
        "cut at , ; : or a conjunction) from UD EWT, UD GUM and GLUE QNLI in ../shared/data, with UD EWT "
        "train's length distribution; deterministic in --seed. A manifest with length quantiles goes to "
        "OUTPUT.json.",
        epilog="Example: python tools/make_corpus.py --n 1000000 --seed 1 --output /tmp/million.txt",
    )
    parser.add_argument("--n", type=int, required=True, help="sentences to write")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--output", "-o", required=True, help="text file to write, one sentence a line (outside the repo)"
    )
    parser.add_argument("--data", default=str(DATA), help=f"the shared data folder (default {DATA})")
    parser.add_argument(
        "--report", action="store_true", help="also measure wordpiece lengths (MiniLM tokenizer) for the manifest"
    )
    args = parser.parse_args(argv)
    out = Path(args.output)
    data = Path(args.data)
    if args.n < 1:
        parser.error(f"--n {args.n}: must be at least 1")
    if _inside_repo(out):
        parser.error(f"--output {out}: inside the repository {ROOT}; the corpus text stays out of it")
    missing = [rel for rel in SOURCES if not (data / rel).is_file()]
    if missing:
        parser.error(f"--data {data}: {missing[0]} not found (the shared real corpora are needed)")
    t0 = time.perf_counter()
    digest = hashlib.sha256()
    words: list[int] = []
    sample: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="\n") as fh:
        for i, text in enumerate(generate(args.n, args.seed, data)):
            line = text + "\n"
            fh.write(line)
            digest.update(line.encode("utf-8"))
            words.append(len(text.split()))
            if args.report and i < 20000:
                sample.append(text)
    ewt = read_sentences(data, LENGTHS_FROM)
    manifest = {
        "tool": "tools/make_corpus.py",
        "n": args.n,
        "seed": args.seed,
        "output_sha256": digest.hexdigest(),
        "inputs": {rel: hashlib.sha256((data / rel).read_bytes()).hexdigest() for rel in SOURCES},
        "words": {"generated": quantiles(words), "ud_ewt_train": quantiles([len(s.split()) for s in ewt])},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.report:
        manifest["wordpieces_minilm"] = {
            "generated_first_20000": quantiles(wordpiece_lengths(sample)),
            "ud_ewt_train": quantiles(wordpiece_lengths(ewt)),
        }
    Path(f"{out}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
