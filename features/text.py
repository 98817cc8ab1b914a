"""Transcript text → tokens → a vocabulary → bag-of-words vectors (the models' ``text`` input).

Tokenisation needs no downloaded data: transcriber markers in square brackets removed (``[inaudible 00:00:16]``,
``[laughs]``: they annotate the recording, they are not what was said; the stored transcript keeps them), lowercase,
apostrophes inside words removed (``don't`` → ``dont``), words =
runs of letters (digits and punctuation split words; any alphabet), words shorter than two letters dropped,
scikit-learn's English stop-word list applied to the unstemmed words, then NLTK's Porter stemmer (pure code, no
corpus). The pipeline builds the vocabulary on the training split only and stores it under a fingerprint of the
training transcripts, the text parameters and :data:`TOKENIZER_VERSION`; each bag of words' fingerprint chains from
it, so a bag-of-words vector is only ever read against the vocabulary it was made with.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np

__all__ = ["TOKENIZER_VERSION", "Vocabulary", "bag_of_words", "build_vocabulary", "tokenize"]

# Bump when tokenize() changes what it returns: ExtractConfig.stage_params("text") carries it, so it is part of the
# vocabulary's fingerprint and of every bag of words'.
TOKENIZER_VERSION = 2
_MARKER = re.compile(r"\[[^\[\]\n]{0,80}\]")  # a transcriber's note, e.g. [inaudible 00:00:16], [crosstalk]
_APOSTROPHE = re.compile(r"(?<=[^\W\d_])['’](?=[^\W\d_])")
_WORD = re.compile(r"[^\W\d_]+")


@cache
def _stemmer_and_stop_words() -> tuple[Callable[[str], str], frozenset[str]]:
    """NLTK's Porter stemmer and scikit-learn's English stop words, imported on first use: reading
    :data:`TOKENIZER_VERSION` (every extraction plan does) does not load NLTK and scikit-learn."""
    from nltk.stem import PorterStemmer
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return PorterStemmer().stem, ENGLISH_STOP_WORDS


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
    stem, stop_words = _stemmer_and_stop_words()
    words = _WORD.findall(_APOSTROPHE.sub("", _MARKER.sub(" ", text).lower()))
    return [stem(w) for w in words if len(w) >= 2 and w not in stop_words]


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
