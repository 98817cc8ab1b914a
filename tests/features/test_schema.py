"""features.schema: the declared stage outputs, their check, and the docs table generated from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from features.probe import ProbeInfo
from features.schema import EMBED_STAGES, STAGE_SCHEMAS, STAGES, markdown_table, schema

_DOCS = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"


def test_every_stage_is_declared_once():
    assert list(STAGE_SCHEMAS) == [*STAGES, *EMBED_STAGES]
    for s in STAGE_SCHEMAS.values():
        names = [a.name for a in s.arrays]
        assert len(names) == len(set(names)) and s.doc and all(a.doc for a in s.arrays), s.stage


def test_probe_record_is_probeinfo():
    assert [f.name for f in schema("probe").record] == [f.name for f in dataclasses.fields(ProbeInfo)]


def test_check_refuses_undeclared_arrays_wrong_dtypes_missing_arrays_and_undeclared_fields():
    text = schema("text")
    text.check({"bow": np.zeros(5, np.float32)}, {"n_tokens": 1, "n_known": 1})
    with pytest.raises(ValueError, match="'bow_extra'.*does not declare"):
        text.check({"bow": np.zeros(5, np.float32), "bow_extra": np.zeros(5, np.float32)}, {})
    with pytest.raises(ValueError, match=r"got float64 \(5,\), declared float32 \(V,\)"):
        text.check({"bow": np.zeros(5)}, {})
    with pytest.raises(ValueError, match=r"did not write its declared array\(s\) \['bow'\]"):
        text.check({}, {})
    with pytest.raises(ValueError, match=r"record field\(s\) \['extra'\]"):
        text.check({"bow": np.zeros(5, np.float32)}, {"extra": 1})
    with pytest.raises(ValueError, match="got float32 \\(87,\\)"):  # a fixed size is checked
        schema("audio").check({"egemaps": np.zeros(87, np.float32)}, {})


def test_profile_names_resolve_and_unknown_arrays_are_refused():
    frames = schema("frames")
    assert frames.name("{profile}_valid", "uniform") == "uniform_valid"
    assert frames.spec_of("per_second_times").name == "{profile}_times" and frames.spec_of("other") is None
    with pytest.raises(KeyError, match="'per_second_valid' is not declared"):
        frames.name("per_second_valid")
    with pytest.raises(ValueError, match="profile='bogus'"):
        frames.name("{profile}", "bogus")
    with pytest.raises(ValueError, match="stage='bogus'"):
        schema("bogus")


def test_docs_table_matches_the_declarations():
    assert markdown_table() in _DOCS.read_text(encoding="utf-8"), (
        "docs/ARCHITECTURE.md 'Stage outputs' differs from features.schema: paste the output of `python -c "
        "'from features.schema import markdown_table; print(markdown_table())'` there")
