"""Decision support on a generated outcome table with a known effect: signs and significance are recovered, a null
trait is not significant, and VIF / KMO / parallel analysis / the one-factor solution match their definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from models.econometrics import (
    CONTROLS_ONLY,
    fit_binary,
    kmo,
    one_factor,
    outcome_analysis,
    parallel_analysis,
    stars,
    trait_regressions,
    vif,
)

LOADED = ("extraversion", "agreeableness", "conscientiousness", "openness")
TRAITS = (*LOADED, "neuroticism")


def _table(n: int = 800, seed: int = 0) -> pd.DataFrame:
    """Four traits share one latent factor F (loadings 0.8); neuroticism is independent of everything (the null).
    admitted ~ Bernoulli(logistic(−0.5 + 1.2 F + 0.8 gpa_high − 0.03 (age − 28)))."""
    rng = np.random.default_rng(seed)
    f = rng.standard_normal(n)
    df = pd.DataFrame({t: 0.5 + 0.05 * (0.8 * f + 0.6 * rng.standard_normal(n)) for t in LOADED})
    df["neuroticism"] = 0.45 + 0.05 * rng.standard_normal(n)
    df["age"] = rng.integers(21, 40, n).astype(float)
    df["gpa_high"] = rng.integers(0, 2, n)
    df["program"] = rng.choice(["full-time", "part-time", "exec"], n)  # categorical control, no effect
    eta = -0.5 + 1.2 * f + 0.8 * df["gpa_high"] - 0.03 * (df["age"] - 28)
    df["admitted"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    df.insert(0, "video_id", [f"v{i:04d}" for i in range(n)])
    return df


CONTROLS = ["age", "gpa_high", "program"]


def test_stars_follow_table_3_7():
    assert [stars(p) for p in (0.2, 0.09, 0.049, 0.009, float("nan"))] == ["", "*", "**", "***", ""]


def test_logit_and_probit_recover_sign_and_significance_of_a_known_effect():
    df = _table()
    rows = trait_regressions(df, "admitted", TRAITS, CONTROLS)
    assert list(rows["link"]) == ["logit"] * 6 + ["probit"] * 6
    assert list(rows["predictor"][:6]) == [CONTROLS_ONLY, *TRAITS]
    by = rows.set_index(["link", "predictor"])
    for link in ("logit", "probit"):
        for trait in LOADED:  # each loaded trait carries the factor: positive and significant
            r = by.loc[(link, trait)]
            assert r["coef"] > 0 and r["p"] < 0.001 and r["stars"] == "***", (link, trait, r)
            assert r["pseudo_r2"] > by.loc[(link, CONTROLS_ONLY), "pseudo_r2"] + 0.01
        null = by.loc[(link, "neuroticism")]
        assert null["p"] > 0.1 and null["stars"] == "", null
        assert abs(null["pseudo_r2"] - by.loc[(link, CONTROLS_ONLY), "pseudo_r2"]) < 0.005
    # probit coefficients ≈ logit / 1.6–1.8 (the usual scale ratio of the two links)
    ratio = by.loc[("logit", "extraversion"), "coef"] / by.loc[("probit", "extraversion"), "coef"]
    assert 1.5 < ratio < 1.9
    assert (rows["nobs"] == 800).all() and rows["converged"].all()


def test_fit_binary_matches_statsmodels_and_encodes_categorical_controls():
    df = _table(300)
    fit = fit_binary(df, "admitted", ["openness"], ["age", "program"], link="logit")
    assert list(fit.coefficients.index) == ["const", "openness", "age", "program_full-time", "program_part-time"]
    x = sm.add_constant(pd.get_dummies(df[["openness", "age", "program"]], columns=["program"], drop_first=True)
                        .astype(float))
    ref = sm.Logit(df["admitted"].astype(float), x).fit(disp=0)
    np.testing.assert_allclose(fit.coefficients["coef"].to_numpy(), ref.params.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(fit.coefficients["se"].to_numpy(), ref.bse.to_numpy(), rtol=1e-6)
    assert fit.pseudo_r2 == pytest.approx(1 - ref.llf / ref.llnull) and fit.nobs == 300
    assert fit.term("openness")["stars"] == stars(fit.term("openness")["p"])


def test_fit_binary_refuses_bad_input():
    df = _table(200)
    with pytest.raises(ValueError, match="link='tobit'"):
        fit_binary(df, "admitted", ["openness"], link="tobit")
    with pytest.raises(ValueError, match="controls=\\['gmat'\\]"):
        fit_binary(df, "admitted", ["openness"], ["gmat"])
    with pytest.raises(ValueError, match="outcome='age'"):
        fit_binary(df, "age", ["openness"])
    sep = df.assign(leak=df["admitted"] * 10.0)
    with pytest.raises(ValueError, match="separated"):
        fit_binary(sep, "admitted", ["leak"])
    with pytest.warns(UserWarning, match="dropped 1 of 200"):
        fit = fit_binary(df.assign(openness=df["openness"].where(df.index != 3)), "admitted", ["openness"])
    assert fit.nobs == 199


def test_vif_is_one_over_one_minus_r2():
    df = _table(400)
    v = vif(df, TRAITS)
    others = [t for t in TRAITS if t != "openness"]
    r2 = sm.OLS(df["openness"], sm.add_constant(df[others])).fit().rsquared
    assert v["openness"] == pytest.approx(1 / (1 - r2))
    assert v["neuroticism"] < 1.05 and v[list(LOADED)].min() > 1.5  # loaded traits share variance: seen ≈ 2


def test_kmo_on_known_cases():
    rng = np.random.default_rng(1)
    two = pd.DataFrame({"a": rng.standard_normal(200)})
    two["b"] = two["a"] + rng.standard_normal(200)
    msa, overall = kmo(two, ["a", "b"])  # with two variables the partial correlation equals r: KMO = 0.5 exactly
    assert overall == pytest.approx(0.5) and np.allclose(msa, 0.5)
    msa, overall = kmo(_table(), TRAITS)
    assert overall > 0.7 and msa[list(LOADED)].min() > 0.75, msa  # one strong common factor: "meritorious"
    with pytest.raises(ValueError, match="constant"):
        kmo(two.assign(c=1.0), ["a", "b", "c"])


def test_parallel_analysis_and_one_factor_find_the_latent_factor():
    df = _table()
    pa = parallel_analysis(df, TRAITS, n_iter=50, seed=0)
    assert pa.n_factors == 1 and pa.observed.shape == pa.random_quantile.shape == (5,)
    assert pa.observed[0] > 2.5 and pa.observed[1] < pa.random_quantile[1]
    assert np.all(np.diff(pa.observed) <= 0)
    noise = pd.DataFrame(np.random.default_rng(3).standard_normal((500, 4)), columns=list("abcd"))
    assert parallel_analysis(noise, list("abcd"), n_iter=50).n_factors == 0
    sol = one_factor(df, TRAITS)
    assert sol.loadings[list(LOADED)].between(0.7, 0.9).all() and abs(sol.loadings["neuroticism"]) < 0.1
    assert sol.scores.shape == (800,)
    assert np.corrcoef(sol.scores, df[list(LOADED)].mean(axis=1))[0, 1] > 0.95
    np.testing.assert_allclose(sol.communalities, sol.loadings**2)


def test_outcome_analysis_regresses_on_the_factor():
    df = _table()
    res = outcome_analysis(df, "admitted", TRAITS, CONTROLS, n_iter=30)
    factor = res.regressions[res.regressions["predictor"] == "factor"].set_index("link")
    assert list(factor.index) == ["logit", "probit"]
    assert (factor["coef"] > 0).all() and (factor["p"] < 1e-6).all()
    assert res.parallel.n_factors == 1 and res.kmo > 0.7 and len(res.vif) == 5
    assert "factor" in res.data.columns and len(res.data) == 800
    with pytest.raises(ValueError, match="at least two"):
        outcome_analysis(df, "admitted", ["openness"])
