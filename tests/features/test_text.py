"""features.text: tokenisation without downloads, the vocabulary, bag-of-words vectors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from features.text import Vocabulary, bag_of_words, build_vocabulary, tokenize


def test_tokenize_lowercases_drops_stop_words_and_stems():
    assert tokenize("The dogs weren't running to 2 parks!") == ["dog", "werent", "run", "park"]
    assert tokenize("Happiness, HAPPY; happily") == ["happi", "happi", "happili"]
    assert tokenize("a I x 42 -- ...") == []  # single letters, numbers, punctuation, stop words
    assert tokenize("") == []


def test_tokenize_keeps_other_alphabets_and_splits_on_digits():
    assert tokenize("café2bar naïve") == ["café", "bar", "naïv"]


def test_tokenize_rejects_non_text():
    with pytest.raises(ValueError, match="text"):
        tokenize(None)  # type: ignore[arg-type]


def test_build_vocabulary_order_min_count_and_max_size():
    corpus = [["dog", "run", "dog"], ["cat", "run"], ["bird"], ["cat", "dog"]]
    assert build_vocabulary(corpus).tokens == ("dog", "cat", "run", "bird")  # 3, 2, 2 (tie: alphabetical), 1
    assert build_vocabulary(corpus, min_count=2).tokens == ("dog", "cat", "run")
    assert build_vocabulary(corpus, max_size=2).tokens == ("dog", "cat")
    assert build_vocabulary(list(reversed(corpus))) == build_vocabulary(corpus)  # order-independent
    assert build_vocabulary([]).tokens == ()


@pytest.mark.parametrize("kwargs, match", [({"min_count": 0}, "min_count"), ({"max_size": -1}, "max_size")])
def test_build_vocabulary_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_vocabulary([["a"]], **kwargs)


def test_build_vocabulary_rejects_raw_strings():
    with pytest.raises(ValueError, match=r"token_lists\[0\].*tokenize"):
        build_vocabulary(["hello world"])  # type: ignore[list-item]


def test_vocabulary_index_and_uniqueness():
    vocab = Vocabulary(("dog", "cat"))
    assert vocab.index == {"dog": 0, "cat": 1} and len(vocab) == 2
    with pytest.raises(ValueError, match="unique.*dog"):
        Vocabulary(("dog", "dog"))
    with pytest.raises(ValueError, match="tuple"):
        Vocabulary(["dog"])  # type: ignore[arg-type]


def test_bag_of_words_binary_and_counts():
    vocab = Vocabulary(("dog", "cat", "run"))
    tokens = ["dog", "run", "dog", "unknown"]
    np.testing.assert_array_equal(bag_of_words(tokens, vocab), np.array([1, 0, 1], np.float32))
    counts = bag_of_words(tokens, vocab, binary=False)
    assert counts.dtype == np.float32 and counts.tolist() == [2.0, 0.0, 1.0]
    assert bag_of_words([], vocab).tolist() == [0.0, 0.0, 0.0]
    assert bag_of_words(["x"], Vocabulary(())).shape == (0,)


def test_bag_of_words_rejects_a_string():
    with pytest.raises(ValueError, match="tokens"):
        bag_of_words("dog", Vocabulary(("dog",)))  # type: ignore[arg-type]


def test_end_to_end_on_transcripts():
    train = ["The dog runs in the park.", "A dog and a cat!", "Cats sleeping all day"]
    vocab = build_vocabulary([tokenize(t) for t in train])
    assert vocab.tokens[:2] == ("cat", "dog")  # "cat"/"cats" and "dog" twice each, tie by token
    vec = bag_of_words(tokenize("Dogs running"), vocab)
    assert vec[vocab.index["dog"]] == 1 and vec[vocab.index["run"]] == 1 and vec.sum() == 2


def test_tokenize_drops_transcriber_markers_and_keeps_non_ascii():
    text = "[inaudible 00:00:16] I think caf\u00e9 culture\u2026 isn\u2019t [crosstalk] over [laughs]"
    assert tokenize(text) == ["think", "caf\u00e9", "cultur", "isnt"]
    assert tokenize("[inaudible 00:00:16]") == [] and tokenize("") == []
    assert tokenize("a [bracket that never closes and talk") == ["bracket", "close", "talk"]


def test_reading_the_tokenizer_version_loads_neither_nltk_nor_sklearn():
    code = ("import sys; from features.extract_video import ExtractConfig; "
            "from features.text import TOKENIZER_VERSION; "
            "assert ExtractConfig().stage_params('text')['tokenizer_version'] == TOKENIZER_VERSION; "
            "print(sorted(m for m in ('nltk', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
