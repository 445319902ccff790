"""Tests of the shared figure style and deterministic saving."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pytest

from kanalysis.errors import ConfigurationError
from kanalysis.plots import style


def _draw(tmp_path, name):
    fig, ax = style.figure("single", aspect=0.6)
    x = np.linspace(0, 10, 50)
    for k in range(3):
        ax.plot(x, np.sin(x + k), label=f"arm {k}")
    ax.fill_between(x, np.sin(x) - 0.2, np.sin(x) + 0.2, alpha=0.2)
    ax.set_xlabel("Study day")
    ax.legend()
    paths = style.save_figure(fig, tmp_path / name / "fig")
    mpl.pyplot.close(fig)
    return paths


def test_save_figure_is_byte_deterministic(tmp_path):
    first = _draw(tmp_path, "a")
    second = _draw(tmp_path, "b")
    assert [p.suffix for p in first] == [".pdf", ".svg", ".png"]
    for p1, p2 in zip(first, second, strict=True):
        assert p1.read_bytes() == p2.read_bytes(), p1.name


def test_saved_files_hold_no_dates_or_versions(tmp_path):
    pdf, svg, png = _draw(tmp_path, "c")
    assert b"CreationDate" not in pdf.read_bytes()
    assert b"Producer" not in pdf.read_bytes()
    assert b"<dc:date>" not in svg.read_bytes()
    assert mpl.__version__.encode() not in png.read_bytes()
    assert mpl.__version__.encode() not in svg.read_bytes()
    # No temporary files are left behind.
    assert sorted(p.name for p in pdf.parent.iterdir()) == ["fig.pdf", "fig.png", "fig.svg"]


def test_png_is_300_dpi_at_journal_width(tmp_path):
    from PIL import Image

    *_, png = _draw(tmp_path, "d")
    with Image.open(png) as img:
        width_px = img.size[0]
        dpi = img.info["dpi"][0]
    assert width_px == pytest.approx(style.JOURNAL_WIDTHS["single"] * 300, abs=2)
    assert dpi == pytest.approx(300, abs=1)


def test_style_context_has_no_lasting_effect():
    before = mpl.rcParams["font.size"]
    with style.style_context(font_size=before + 3) as params:
        assert mpl.rcParams["font.size"] == before + 3
        assert params["axes.prop_cycle"].by_key()["color"][0] == style.OKABE_ITO["blue"]
    assert mpl.rcParams["font.size"] == before


def test_fonts_are_journal_sized():
    params = style.rc_params()
    sizes = [
        v
        for k, v in params.items()
        if k.endswith("size") and "marker" not in k and "major" not in k
    ]
    assert min(sizes) >= 7 and max(sizes) <= 9
    assert params["font.family"] == "sans-serif"


def test_arm_colors_are_stable_and_control_is_black():
    a = style.arm_colors(["ketamine", "midazolam", "ketamine"])
    b = style.arm_colors(["midazolam", "ketamine"])
    assert a == b
    assert a["midazolam"] == style.OKABE_ITO["black"]
    assert a["ketamine"] != a["midazolam"]
    assert set(a.values()) <= set(style.OKABE_ITO.values())


def test_journal_widths_and_bad_width():
    assert 3.3 <= style.JOURNAL_WIDTHS["single"] <= 3.6
    assert 7.0 <= style.JOURNAL_WIDTHS["double"] <= 7.3
    fig, _ = style.figure("double", aspect=0.5)
    assert fig.get_size_inches() == pytest.approx([7.2, 3.6])
    mpl.pyplot.close(fig)
    with pytest.raises(ConfigurationError, match="width"):
        style.figure("triple")


def test_unknown_format_is_rejected(tmp_path):
    fig, _ = style.figure()
    with pytest.raises(ConfigurationError, match="docx"):
        style.save_figure(fig, tmp_path / "x", formats=("docx",))
    mpl.pyplot.close(fig)


def test_control_arm():
    assert style.control_arm(["ketamine", "midazolam"]) == "midazolam"
    assert style.control_arm(["maintenance", "no_maintenance"]) == "no_maintenance"
    assert style.control_arm(["ketamine"]) is None


def test_style_context_reset_ignores_process_settings():
    with mpl.rc_context({"lines.linewidth": 5.0, "axes.facecolor": "red"}):
        with style.style_context(reset=True):
            assert mpl.rcParams["axes.facecolor"] == "white"
            assert mpl.rcParams["lines.linewidth"] == style.rc_params()["lines.linewidth"]
        assert mpl.rcParams["lines.linewidth"] == 5.0
