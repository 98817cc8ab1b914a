"""Transcript text → tokens → a fingerprinted vocabulary → bag-of-words vectors (the models' ``text`` input).

Tokenisation needs no downloaded data: transcriber markers in square brackets removed (``[inaudible 00:00:16]``,
``[laughs]``: they annotate the recording, they are not what was said; the stored transcript keeps them), lowercase,
apostrophes inside words removed (``don't`` → ``dont``), words =
runs of letters (digits and punctuation split words; any alphabet), words shorter than two letters dropped,
scikit-learn's English stop-word list applied to the unstemmed words, then NLTK's Porter stemmer (pure code, no
corpus). The vocabulary is built on the training split only (by the pipeline) and fingerprinted, so a bag-of-words
vector is only ever read against the vocabulary it was made with.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from nltk.stem import PorterStemmer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from features.fingerprint import fingerprint as _fingerprint

__all__ = ["TOKENIZER_VERSION", "Vocabulary", "bag_of_words", "build_vocabulary", "tokenize"]

# Bump when tokenize() changes what it returns: it is part of every vocabulary's fingerprint.
TOKENIZER_VERSION = 2
_FORMAT = "vidpipe.vocabulary"
_MARKER = re.compile(r"\[[^\[\]\n]{0,80}\]")  # a transcriber's note, e.g. [inaudible 00:00:16], [crosstalk]
_APOSTROPHE = re.compile(r"(?<=[^\W\d_])['’](?=[^\W\d_])")
_WORD = re.compile(r"[^\W\d_]+")
_STEMMER = PorterStemmer()


def tokenize(text: str) -> list[str]:
    """Drop ``[...]`` markers, lowercase, keep words of >= 2 letters, drop English stop words, Porter-stem.

    >>> tokenize("The dogs weren't running to 2 parks!")
    ['dog', 'werent', 'run', 'park']
    >>> tokenize("I went [inaudible 00:00:16] home [laughs]")
    ['went', 'home']

    Raises:
        ValueError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise ValueError(f"text: expected a str, got {type(text).__name__}")
    words = _WORD.findall(_APOSTROPHE.sub("", _MARKER.sub(" ", text).lower()))
    return [_STEMMER.stem(w) for w in words if len(w) >= 2 and w not in ENGLISH_STOP_WORDS]


@dataclass(frozen=True)
class Vocabulary:
    """An ordered token list; token ``tokens[i]`` is dimension ``i`` of a bag-of-words vector."""

    tokens: tuple[str, ...]  # unique tokens in dimension order

    def __post_init__(self) -> None:
        if not isinstance(self.tokens, tuple) or not all(isinstance(t, str) and t for t in self.tokens):
            raise ValueError(f"tokens: expected a tuple of non-empty str, got {type(self.tokens).__name__}")
        if len(set(self.tokens)) != len(self.tokens):
            dupes = sorted(t for t, n in Counter(self.tokens).items() if n > 1)[:5]
            raise ValueError(f"tokens: must be unique, repeated: {dupes}")

    def __len__(self) -> int:
        return len(self.tokens)

    @cached_property
    def index(self) -> dict[str, int]:
        """token → dimension."""
        return {t: i for i, t in enumerate(self.tokens)}

    def fingerprint(self) -> str:
        """Content hash (32 hex chars) of the tokens, their order and the tokenizer version."""
        return _fingerprint("vocabulary", TOKENIZER_VERSION, {"tokens": list(self.tokens)})

    def to_json(self) -> str:
        """JSON text with the tokens and the fingerprint (checked again by :meth:`from_json`)."""
        return json.dumps({"format": _FORMAT, "tokenizer_version": TOKENIZER_VERSION,
                           "fingerprint": self.fingerprint(), "tokens": list(self.tokens)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Vocabulary":
        """Inverse of :meth:`to_json`.

        Raises:
            ValueError: not a vocabulary document, a different tokenizer version, or a fingerprint mismatch
                (edited or corrupted file).
        """
        try:
            doc = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"text: not JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT or not isinstance(doc.get("tokens"), list):
            raise ValueError(f"text: not a {_FORMAT} document")
        if doc.get("tokenizer_version") != TOKENIZER_VERSION:
            raise ValueError(
                f"tokenizer_version={doc.get('tokenizer_version')!r}: this code tokenises as version "
                f"{TOKENIZER_VERSION}; rebuild the vocabulary"
            )
        vocab = cls(tuple(doc["tokens"]))
        if doc.get("fingerprint") != vocab.fingerprint():
            raise ValueError(
                f"fingerprint={doc.get('fingerprint')!r} does not match the tokens ({vocab.fingerprint()}); the file "
                "was edited or damaged — rebuild the vocabulary"
            )
        return vocab


def _check_tokens(tokens: object, name: str) -> Sequence[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise ValueError(f"{name}: expected a list of tokens (call tokenize() first), got {type(tokens).__name__}")
    return tokens


def build_vocabulary(token_lists: Iterable[Sequence[str]], *, min_count: int = 1,
                     max_size: int | None = None) -> Vocabulary:
    """The vocabulary of a corpus (the training split's token lists).

    A token is kept when it occurs at least ``min_count`` times in total; the order is by count descending, ties
    by token, and ``max_size`` keeps the first ones — deterministic for a given corpus, whatever its order.

    Raises:
        ValueError: ``min_count`` < 1, ``max_size`` < 0, or an item is not a list of tokens.
    """
    if not (isinstance(min_count, int) and min_count >= 1):
        raise ValueError(f"min_count={min_count!r}: expected an int >= 1")
    if max_size is not None and not (isinstance(max_size, int) and max_size >= 0):
        raise ValueError(f"max_size={max_size!r}: expected an int >= 0 or None")
    counts: Counter[str] = Counter()
    for i, tokens in enumerate(token_lists):
        counts.update(_check_tokens(tokens, f"token_lists[{i}]"))
    kept = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
    return Vocabulary(tuple(kept if max_size is None else kept[:max_size]))


def bag_of_words(tokens: Sequence[str], vocab: Vocabulary, *, binary: bool = True) -> np.ndarray:
    """Bag-of-words vector over ``vocab``: 1 where a token occurs (``binary``) or its count; unknown tokens ignored.

    Shapes:
        returns: (V,) float32, V = len(vocab)
    """
    tokens = _check_tokens(tokens, "tokens")
    if not isinstance(vocab, Vocabulary):
        raise ValueError(f"vocab: expected a Vocabulary, got {type(vocab).__name__}")
    out = np.zeros(len(vocab), dtype=np.float32)
    index = vocab.index
    for token in tokens:
        i = index.get(token)
        if i is not None:
            out[i] = 1.0 if binary else out[i] + 1.0
    return out
