import numpy as np
import pytest

from landslide_mapper.core.geodata.bands import (BandMapping, build_channels, guess_mapping,
                                          required_spectral)
from landslide_mapper.core.errors import InputError


def test_presets():
    assert BandMapping.parse("planetscope4").as_dict() == {"B": 1, "G": 2, "R": 3, "NIR": 4}
    assert BandMapping.parse("rapideye5").as_dict() == {"B": 1, "G": 2, "R": 3, "RE": 4, "NIR": 5}
    assert BandMapping.parse("rgbnir").as_dict() == {"R": 1, "G": 2, "B": 3, "NIR": 4}


def test_custom_mapping_and_aliases():
    m = BandMapping.parse("blue=3, green=2, red=1, nir=4")
    assert m.as_dict() == {"B": 3, "G": 2, "R": 1, "NIR": 4}


@pytest.mark.parametrize("spec,fragment", [("sentinel", "Unknown band mapping"),
                                           ("B=1,X=2", "Unknown channel"),
                                           ("B=0,G=1", "1 or more"),
                                           ("B=1,blue=2", "twice")])
def test_bad_mappings(spec, fragment):
    with pytest.raises(InputError, match=fragment):
        BandMapping.parse(spec)


def test_guess_prefers_descriptions_then_colour_interpretation():
    assert guess_mapping(4, ["blue", "green", "red", "nir"], ["blue", "green", "red", "undefined"]).as_dict() == \
        {"B": 1, "G": 2, "R": 3, "NIR": 4}
    # NAIP-like R,G,B,NIR tagged by colour interpretation
    assert guess_mapping(4, [None] * 4, ["red", "green", "blue", "undefined"]).as_dict() == \
        {"R": 1, "G": 2, "B": 3, "NIR": 4}
    # RGBA: the alpha band is never taken for NIR
    assert "NIR" not in guess_mapping(4, [None] * 4, ["blue", "green", "red", "alpha"]).as_dict()
    assert guess_mapping(5, [None] * 5, ["undefined"] * 5).name == "rapideye5"


def test_ndvi_channel():
    spec = {c: np.full((2, 2), v, np.float32) for c, v in zip("BGR", (0.03, 0.06, 0.035))}
    spec["NIR"] = np.full((2, 2), 0.3, np.float32)
    spec["R"][0, 0] = spec["NIR"][0, 0] = 0.0  # 0/0 must not give NaN
    x = build_channels(spec, ["B", "G", "R", "NIR", "NDVI"])
    assert x.shape == (5, 2, 2) and x.dtype == np.float32
    assert x[4, 1, 1] == pytest.approx((0.3 - 0.035) / 0.335)
    assert x[4, 0, 0] == 0.0
    assert required_spectral(["B", "G", "R", "NIR", "NDVI"]) == ["B", "G", "R", "NIR"]
    assert required_spectral(["NDVI"]) == ["R", "NIR"]


def test_channels_built_into_a_batch_slot_equal_the_stacked_ones():
    """Inference builds each tile's channels straight into its batch slot: same values as
    the stacked form, from strided views of a wider window, NaN-free where R + NIR ≤ 0."""
    rng = np.random.default_rng(3)
    window = {c: rng.uniform(0, 0.5, (8, 20)).astype(np.float32) for c in ("B", "G", "R", "NIR")}
    window["R"][2, 5] = window["NIR"][2, 5] = 0.0
    views = {c: a[:, 4:12] for c, a in window.items()}
    channels = ["NDVI", "B", "G", "R", "NIR"]
    batch = np.full((2, 5, 8, 8), np.nan, np.float32)
    out = build_channels(views, channels, out=batch[1])
    assert out is batch[1] or np.shares_memory(out, batch)
    np.testing.assert_array_equal(batch[1], build_channels({c: v.copy() for c, v in views.items()}, channels))
    assert batch[1, 0, 2, 1] == 0.0 and np.isnan(batch[0]).all()
