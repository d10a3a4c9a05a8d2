"""Frequency-area statistics: binned densities, DPS / inverse-gamma / power-law fits, mLS."""
import contextlib
import io
import json
import math

import numpy as np
import pytest
from scipy import integrate, stats

from conftest import shared
from landslide_mapper.core.inventory import fad


def power_law_with_body(seed, n_body=2000, n_tail=1500, alpha=2.5, x_min=1000.0):
    """A lognormal body below x_min and a pure power-law tail above it (inverse cdf)."""
    rng = np.random.default_rng(seed)
    body = rng.lognormal(math.log(300.0), 0.8, 3 * n_body)
    body = body[body < x_min][:n_body]
    tail = x_min * (1.0 - rng.random(n_tail)) ** (-1.0 / (alpha - 1.0))
    return np.concatenate([body, tail])


def usgs_areas():
    return np.loadtxt(shared("usgs_mls") / "sample_data_area_m2.csv", skiprows=1)


# ------------------------------------------------------------------------ binned densities

def test_binned_density_by_hand():
    areas = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 99.0]
    b = fad.log_binned_density(areas, bins_per_decade=1)
    np.testing.assert_allclose(b.edges, [1.0, 10.0, 100.0])
    assert b.counts.tolist() == [3, 4]
    np.testing.assert_allclose(b.widths, [9.0, 90.0])
    np.testing.assert_allclose(b.frequency_density, [3 / 9, 4 / 90])
    np.testing.assert_allclose(b.density, [3 / (7 * 9), 4 / (7 * 90)])
    np.testing.assert_allclose(b.centers, [math.sqrt(10), math.sqrt(1000)])
    assert b.nonempty.tolist() == [True, True]


def test_binned_density_integrates_to_one_and_flags_empty_bins():
    rng = np.random.default_rng(3)
    areas = np.concatenate([rng.lognormal(6, 1.5, 500), [1e7]])   # an isolated giant: gaps
    b = fad.log_binned_density(areas, bins_per_decade=10)
    assert np.sum(b.density * b.widths) == pytest.approx(1.0, rel=1e-12)
    assert b.counts.sum() == areas.size
    assert (~b.nonempty).any() and np.all(b.density[~b.nonempty] == 0)
    assert b.edges[0] <= areas.min() and b.edges[-1] >= areas.max()
    # edges are aligned to powers of ten (comparable between years)
    k = np.log10(b.edges[1:-1]) * 10
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)


def test_binned_density_ignores_bad_values_and_handles_equal_areas():
    b = fad.log_binned_density([100.0, 100.0, np.nan, -1.0, 0.0])
    assert b.n == 2 and b.counts.sum() == 2
    assert np.sum(b.density * b.widths) == pytest.approx(1.0)
    empty = fad.log_binned_density([])
    assert empty.n == 0 and empty.counts.size == 0


def test_binned_rollover_ignores_sparse_bins_and_cut_lowest_bin():
    rng = np.random.default_rng(0)
    areas = fad.dps_sample(20000, 1.4, 3.0, 1000.0, rng=rng)
    roll = fad.binned_rollover(fad.log_binned_density(areas, 10))
    true = fad.dps_rollover(1.4, 3.0, 1000.0)
    assert roll == pytest.approx(true, rel=0.15)           # one bin is 26 % wide
    # truncated at 300 m² with no rollover above: a single sliver must not create one
    tail = 300.0 * (1 - rng.random(2000)) ** (-1 / 1.4)
    assert fad.binned_rollover(fad.log_binned_density(np.append(tail, 0.2))) is None


# ------------------------------------------------------------------------------ power law

def test_power_law_recovers_x_min_and_alpha():
    areas = power_law_with_body(seed=2)
    fit = fad.fit_power_law(areas)
    # 1500 tail points: σ(α) = 1.5/√1500 ≈ 0.039, tolerance ≈ 4σ
    assert fit.alpha == pytest.approx(2.5, abs=0.15)
    # a power law above x_min is one above any larger value too, so the KS choice may land
    # somewhat above the true x_min (up to 1.6·x_min in 20 seeds), never much below it
    assert 900 <= fit.x_min <= 2000
    assert fit.alpha_se == pytest.approx((fit.alpha - 1) / math.sqrt(fit.n_tail))
    assert fit.n == areas.size and 1000 <= fit.n_tail <= 1600 and fit.exhaustive


def test_power_law_matches_the_powerlaw_package_with_ties():
    powerlaw = pytest.importorskip("powerlaw")
    areas = np.round(power_law_with_body(seed=5, n_body=600, n_tail=400), -1)  # many ties
    mine = fad.fit_power_law(areas)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        ref = powerlaw.Fit(areas, discrete=False)
    assert mine.x_min == ref.xmin
    assert mine.alpha == pytest.approx(ref.alpha, rel=1e-10)
    assert mine.ks_distance == pytest.approx(ref.D, rel=1e-9)
    assert mine.n_tail == ref.n_tail


def test_power_law_coarse_to_fine_scan_and_bootstrap():
    areas = power_law_with_body(seed=7)
    full = fad.fit_power_law(areas)
    thin = fad.fit_power_law(areas, max_candidates=300)
    assert not thin.exhaustive and thin.candidates_scanned < full.candidates_scanned
    assert thin.ks_distance >= full.ks_distance - 1e-12       # the exhaustive scan is optimal
    assert thin.alpha == pytest.approx(full.alpha, abs=0.1)
    b1 = fad.fit_power_law(areas, bootstrap=30, seed=11)
    b2 = fad.fit_power_law(areas, bootstrap=30, seed=11)
    assert (b1.x_min_error, b1.alpha_error) == (b2.x_min_error, b2.alpha_error)   # seeded
    assert b1.n_bootstrap == 30 and b1.x_min_error > 0
    # the bootstrap spread of α is of the order of its asymptotic standard error
    assert 0.5 * full.alpha_se < b1.alpha_error < 3 * full.alpha_se


# ------------------------------------------------------------------------------------- DPS

@pytest.mark.parametrize("m", [0.0, 250.0])
def test_dps_pdf_is_normalised_and_has_the_documented_shape(m):
    al, be, t = 1.4, 2.5, 800.0
    total, _ = integrate.quad(lambda u: fad.dps_pdf(math.exp(u), al, be, t, m) * math.exp(u),
                              math.log(m) if m else -30.0, 40.0, limit=400)
    assert total == pytest.approx(1.0, abs=1e-7)
    x = np.array([5e2, 2e3, 1e4])
    c, _ = integrate.quad(lambda u: fad.dps_pdf(math.exp(u), al, be, t, m) * math.exp(u),
                          math.log(m) if m else -30.0, math.log(2e3), limit=200)
    assert fad.dps_cdf(2e3, al, be, t, m) == pytest.approx(c, abs=1e-8)
    # density ~ A^-(α+1) far above t, ~ A^(β-1) far below it
    big = np.array([1e9, 1e10])
    slope = np.diff(np.log(fad.dps_pdf(big, al, be, t, m))) / np.diff(np.log(big))
    assert slope[0] == pytest.approx(-(al + 1), abs=1e-3)
    if not m:
        small = np.array([1e-3, 1e-2])
        slope = np.diff(np.log(fad.dps_pdf(small, al, be, t))) / np.diff(np.log(small))
        assert slope[0] == pytest.approx(be - 1, abs=1e-3)
    # analytic rollover = numerical maximum of the density
    grid = np.geomspace(m or 1.0, 1e5, 200001)
    assert fad.dps_rollover(al, be, t, m) == pytest.approx(grid[np.argmax(fad.dps_pdf(grid, al, be, t, m))],
                                                           rel=1e-3)
    assert np.all(fad.dps_pdf(x, al, be, t, m) > 0)


def test_dps_fit_recovers_parameters():
    areas = fad.dps_sample(4000, 1.4, 2.5, 800.0, rng=np.random.default_rng(4))
    fit = fad.fit_dps(areas, m=0)
    # standard errors at n = 4000 are ≈ 0.03 (α), 0.15 (β), 65 m² (t): tolerances ≈ 3-4σ
    assert fit.alpha == pytest.approx(1.4, abs=0.12)
    assert fit.beta == pytest.approx(2.5, abs=0.5)
    assert fit.t == pytest.approx(800.0, rel=0.3)
    assert fit.tail_exponent == pytest.approx(fit.alpha + 1)
    assert fit.converged and not fit.bounds_hit
    for est, se, true in ((fit.alpha, fit.alpha_se, 1.4), (fit.beta, fit.beta_se, 2.5),
                          (fit.t, fit.t_se, 800.0)):
        assert se is not None and abs(est - true) < 4 * se
    assert fit.rollover == pytest.approx(fad.dps_rollover(1.4, 2.5, 800.0), rel=0.15)
    # truncation at the smallest area (the default) changes little on untruncated data
    assert fad.fit_dps(areas).alpha == pytest.approx(fit.alpha, abs=0.02)


def test_dps_fit_with_a_mapping_limit():
    areas = fad.dps_sample(4000, 1.4, 2.5, 800.0, m=300.0, rng=np.random.default_rng(8))
    assert areas.min() >= 300.0
    fit = fad.fit_dps(areas, m=300.0)
    # truncation costs information on the small side: β's standard error is ≈ 0.4 here
    assert fit.alpha == pytest.approx(1.4, abs=0.15)
    assert fit.beta == pytest.approx(2.5, abs=1.3)
    assert fit.rollover == pytest.approx(fad.dps_rollover(1.4, 2.5, 800.0), rel=0.3)
    # a pure power law above the limit has no rollover above it
    pure = 300.0 * (1 - np.random.default_rng(1).random(1500)) ** (-1 / 1.3)
    assert fad.fit_dps(pure).rollover is None


# --------------------------------------------------------------------------- inverse gamma

def test_inverse_gamma_pdf_matches_scipy_and_its_mode():
    x = np.geomspace(10, 1e6, 50)
    np.testing.assert_allclose(fad.inverse_gamma_pdf(x, 1.4, 1280.0, -128.0),
                               stats.invgamma.pdf(x, 1.4, loc=-128.0, scale=1280.0), rtol=1e-10)
    assert fad.inverse_gamma_pdf(np.array([-200.0]), 1.4, 1280.0, -128.0)[0] == 0.0
    grid = np.linspace(1, 2000, 400001)
    mode = grid[np.argmax(fad.inverse_gamma_pdf(grid, 1.4, 1280.0, -128.0))]
    # Malamud et al. (2004): rollover ≈ 400 m² for ρ=1.40, a=1.28e-3 km², s=-1.28e-4 km²
    assert fad.inverse_gamma_rollover(1.4, 1280.0, -128.0) == pytest.approx(mode, abs=0.01)
    assert mode == pytest.approx(405.3, abs=0.5)


def test_inverse_gamma_fit_recovers_malamud_parameters():
    areas = stats.invgamma.rvs(1.4, loc=-128.0, scale=1280.0, size=5000, random_state=2)
    fit = fad.fit_inverse_gamma(areas)
    # standard errors at n = 5000: ρ ≈ 0.035, a ≈ 51 m², s ≈ 9 m²; tolerances ≈ 4σ
    assert fit.rho == pytest.approx(1.4, abs=0.14)
    assert fit.a == pytest.approx(1280.0, abs=200.0)
    assert fit.s == pytest.approx(-128.0, abs=40.0)
    assert fit.tail_exponent == pytest.approx(fit.rho + 1)
    assert fit.rollover == pytest.approx(405.3, rel=0.08)
    # it is a maximum: not worse than the true parameters nor scipy's own fit
    ll = stats.invgamma.logpdf(areas, fit.rho, loc=fit.s, scale=fit.a).sum()
    assert fit.log_likelihood == pytest.approx(ll, rel=1e-9)
    assert ll >= stats.invgamma.logpdf(areas, 1.4, loc=-128.0, scale=1280.0).sum()
    with np.errstate(all="ignore"):
        assert ll >= stats.invgamma.logpdf(areas, *stats.invgamma.fit(areas)).sum() - 1e-6


# -------------------------------------------------------------------------------------- mLS

def test_mls_binning_and_formula_by_hand():
    edges = 2.0 * 1.2 ** np.arange(120)
    k = 34                                    # lower edge 984.4 m², nearest to x_min = 1000
    areas = np.full(5, edges[k] + 1.0)
    m = fad.landslide_event_magnitude(areas, x_min=1000.0, alpha=2.3)
    width_below = edges[k] - edges[k - 1]     # the reference script's width convention
    fd = 5 / width_below
    c = fd * 1000.0 ** 2.3
    c_ref = 8.364725347860417e-4 * 4.876599623713225e4 ** 2.3 / 11111
    assert m.anchor_area == pytest.approx(edges[k])
    assert m.anchor_frequency_density == pytest.approx(fd)
    assert m.mls == pytest.approx(math.log10(c / c_ref), abs=1e-12)
    assert m.mls_error is None
    # ten times as many landslides of every size: exactly one magnitude unit more
    assert fad.landslide_event_magnitude(np.repeat(areas, 10), 1000.0, 2.3).mls == \
        pytest.approx(m.mls + 1.0, abs=1e-12)
    # the sign of the exponent does not matter (β = -α in the reference script)
    assert fad.landslide_event_magnitude(areas, 1000.0, -2.3).mls == pytest.approx(m.mls)
    with pytest.raises(ValueError):
        fad.landslide_event_magnitude(areas, x_min=1e5, alpha=2.3)   # empty anchor bin


def test_usgs_reference_inventory():
    areas = usgs_areas()
    res = fad.analyse_fad(areas)
    pl = res.power_law
    assert pl.x_min == 9234.0
    assert pl.alpha == pytest.approx(2.46, abs=0.01)
    assert pl.n_tail == 120
    assert res.mls.mls == pytest.approx(3.63, abs=0.02)
    # the published magnitude and its uncertainty (±0.08) from the published fit and errors,
    # with the Monte-Carlo procedure of the reference script
    ref = fad.landslide_event_magnitude(areas, 9234.0, 2.46, x_min_error=2433.0,
                                        alpha_error=0.182, error_method="reference")
    assert ref.mls == pytest.approx(3.63, abs=0.02)
    assert ref.mls_error == pytest.approx(0.08, abs=0.01)
    consistent = fad.landslide_event_magnitude(areas, 9234.0, 2.46, 2433.0, 0.182)
    assert consistent.mls_error > ref.mls_error
    # the three fitted pdfs agree on the rollover and on a tail exponent near 2
    assert res.dps.rollover == pytest.approx(res.inverse_gamma.rollover, rel=0.1)
    assert 2.0 < res.dps.tail_exponent < 2.5 and 2.0 < res.inverse_gamma.tail_exponent < 2.5
    json.dumps(res.to_dict())


# ------------------------------------------------------------------ analysis and chart data

def test_analyse_fad_and_chart_series():
    areas = power_law_with_body(seed=1, n_body=1500, n_tail=800)
    areas = np.concatenate([areas, [0.0, -3.0, np.nan, np.inf]])
    res = fad.analyse_fad(areas, bootstrap=10, seed=3)
    assert (res.n_input, res.n, res.n_dropped, res.n_nonfinite, res.n_nonpositive) == \
        (2304, 2300, 4, 2, 2)
    assert res.notes and "dropped 4" in res.notes[0]
    assert res.power_law.n_bootstrap == 10
    assert res.mls is not None and res.mls.mls_error is not None
    assert res.mls.x_min_error == pytest.approx(res.power_law.x_min_error)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["n"] == 2300 and d["power_law"]["x_min"] == res.power_law.x_min

    s = fad.fad_chart_series(res, 2017)
    json.dumps(s)
    assert set(s) == {"label", "n", "bin_centers", "density", "fits", "rollover_m2", "x_min_m2",
                      "alpha", "n_tail", "mls"}
    assert s["label"] == "2017" and s["n"] == 2300
    assert len(s["bin_centers"]) == len(s["density"]) == int(res.binned.nonempty.sum())
    assert all(v > 0 for v in s["density"])
    assert [f["name"] for f in s["fits"]] == ["power_law", "dps", "inverse_gamma"]
    pl = res.power_law
    curve = s["fits"][0]
    assert curve["x"][0] == pytest.approx(pl.x_min)
    assert curve["y"][0] == pytest.approx((pl.alpha - 1) / pl.x_min * pl.n_tail / pl.n)
    assert curve["label"].startswith(f"power law α={pl.alpha:.2f}, x_min=")
    assert "m²" in curve["label"] and f"{pl.x_min:,.0f}" in curve["label"]
    for f in s["fits"]:
        assert len(f["x"]) == len(f["y"]) and all(np.isfinite(f["y"]))
    assert s["x_min_m2"] == pl.x_min and s["alpha"] == pl.alpha and s["mls"] == res.mls.mls
    assert s["rollover_m2"] == res.rollover["dps"]


@pytest.mark.parametrize("areas", [
    [], [np.nan], [0.0, -5.0, np.nan, np.inf], [100.0] * 20, [120.0, 300.0, 5000.0],
    [200.0] * 15 + [201.0], list(np.geomspace(200, 2e4, 9)), ["12", None, "x", 40.0],
    [1e-300, 1e300, 5.0] * 5, [1.0, 1.0 + 1e-12] * 10, None, 7.0,
])
def test_degenerate_inventories_do_not_raise(areas):
    res = fad.analyse_fad(areas)
    d = json.loads(json.dumps(res.to_dict()))
    s = fad.fad_chart_series(res, "year")
    json.dumps(s)
    assert d["n"] == res.n and s["n"] == res.n
    for name in ("power_law", "dps", "inverse_gamma", "mls"):
        assert (getattr(res, name) is None) == (name in res.skipped)
        if name in res.skipped:
            assert isinstance(res.skipped[name], str) and res.skipped[name]
    if res.n < 10:
        assert res.power_law is None and res.dps is None and s["fits"] == []


def test_object_and_iterator_inputs():
    res = fad.analyse_fad(["12", None, "x", 40.0])
    assert (res.n, res.n_nonfinite) == (2, 2)
    res = fad.analyse_fad(a for a in power_law_with_body(seed=0, n_body=100, n_tail=100))
    assert res.n == res.n_input == 200 and res.power_law is not None
