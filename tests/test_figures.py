"""Tests of figures.py: the plotted data is the paper's formula, and the PNGs regenerate byte for byte."""

from pathlib import Path

import numpy as np
import pytest

from numpy_retinanet.figures import (
    FIGURES,
    GAMMAS,
    focal_loss_curves,
    focal_loss_gradient_curves,
    make_figures,
    plot_focal_loss_gradient,
    plot_focal_loss_vs_pt,
    register_figure,
)

COMMITTED = Path(__file__).resolve().parent.parent / "figures"
NAMES = ["focal_loss_vs_pt", "focal_loss_gradient"]


def test_figure_1_data_is_ce_and_fl_of_p_t():
    curves = focal_loss_curves()
    p_t = curves["p_t"]
    assert p_t.min() > 0 and p_t.max() < 1 and p_t.size > 1000
    assert tuple(curves["fl"]) == GAMMAS == (0.0, 0.5, 1.0, 2.0, 5.0)  # the paper's Figure 1
    np.testing.assert_allclose(curves["ce"], -np.log(p_t), rtol=1e-10, atol=0)  # eq. 2
    for g, fl in curves["fl"].items():  # eq. 4
        np.testing.assert_allclose(fl, -((1 - p_t) ** g) * np.log(p_t), rtol=1e-10, atol=0, err_msg=g)


def test_figure_1_draws_exactly_its_data():
    curves = focal_loss_curves(gammas=(0.0, 2.0), p_t=np.array([0.1, 0.5, 0.9]))
    fig = plot_focal_loss_vs_pt(curves)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    expected = {r"CE $= -\log p_t$": curves["ce"],
                r"FL, $\gamma = 0$": curves["fl"][0.0], r"FL, $\gamma = 2$": curves["fl"][2.0]}
    assert set(lines) == set(expected)
    for label, y in expected.items():
        np.testing.assert_array_equal(lines[label].get_xdata(), curves["p_t"])
        np.testing.assert_array_equal(lines[label].get_ydata(), y)
    assert fig.axes[0].get_ylim() == (0.0, 5.0)


def test_gradient_figure_data_is_appendix_b():
    curves = focal_loss_gradient_curves()
    x = curves["x"]
    assert x.min() == -10 and x.max() == 10
    p = 1 / (1 + np.exp(-x))
    for g, grad in curves["grad"].items():
        np.testing.assert_allclose(grad, (1 - p) ** g * (g * p * np.log(p) + p - 1), rtol=1e-9, atol=0,
                                   err_msg=g)


def test_gradient_figure_draws_exactly_its_data():
    curves = focal_loss_gradient_curves(gammas=(0.0, 5.0), x=np.array([-3.0, 0.0, 3.0]))
    fig = plot_focal_loss_gradient(curves)
    drawn = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("FL")]
    assert len(drawn) == 2
    for line, grad in zip(drawn, curves["grad"].values()):
        np.testing.assert_array_equal(line.get_ydata(), grad)
    # the gamma = 5 dip below -1 stays inside the axes
    assert fig.axes[0].get_ylim()[0] < curves["grad"][5.0].min()


@pytest.mark.parametrize("p_t", [np.array([0.0, 0.5]), np.array([0.5, 1.0]), np.array([[0.5]]), np.array([])])
def test_figure_1_refuses_p_t_outside_the_open_interval(p_t):
    with pytest.raises(ValueError, match="p_t"):
        focal_loss_curves(p_t=p_t)


@pytest.fixture(scope="module")
def two_renderings(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    return make_figures(a), make_figures(b)


def test_make_figures_writes_every_registered_figure(two_renderings):
    first, _ = two_renderings
    assert len(first) == len(FIGURES) and list(FIGURES)[:2] == NAMES
    assert [p.name for p in first][:2] == [n + ".png" for n in NAMES]
    for p in first:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_regenerate_byte_identical(two_renderings):
    for p, q in zip(*two_renderings):
        assert p.read_bytes() == q.read_bytes(), p.name


@pytest.mark.parametrize("name", NAMES)
def test_committed_figures_match_a_fresh_rendering(two_renderings, name):
    fresh = {p.name: p for p in two_renderings[0]}[name + ".png"]
    committed = COMMITTED / (name + ".png")
    assert committed.exists(), f"{committed} is missing: run `numpy-retinanet figures`"
    assert fresh.read_bytes() == committed.read_bytes(), (
        f"{committed} is out of date (or was made with another matplotlib): run `numpy-retinanet figures`"
    )


def test_only_selects_and_unknown_names_are_refused(tmp_path):
    paths = make_figures(tmp_path, only=["focal_loss_gradient"])
    assert [p.name for p in paths] == ["focal_loss_gradient.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["focal_loss_gradient.png"]
    with pytest.raises(ValueError, match=r"only.*focal_loss_vs_pt.*no_such_figure"):
        make_figures(tmp_path, only=["no_such_figure"])
    with pytest.raises(ValueError, match=r"only"):
        make_figures(tmp_path, only=[])


def test_a_figure_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="focal_loss_vs_pt.*already registered"):
        register_figure("focal_loss_vs_pt")(lambda out_dir: out_dir)
