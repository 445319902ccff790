"""Paper figures: every figure at both widths and all formats, byte-identical on a second run."""

from __future__ import annotations

import matplotlib as mpl
import pytest

from kanalysis import figures
from kanalysis.errors import ConfigurationError
from kanalysis.plots.style import JOURNAL_WIDTHS


@pytest.fixture(scope="module")
def first_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures_a")
    return out, figures.build_paper_figures(out=out)


def test_every_figure_at_both_widths_and_formats(first_build):
    out, written = first_build
    names = {p.name for p in written}
    for name in figures.FIGURES:
        for width in ("single", "double"):
            for fmt in ("pdf", "svg", "png"):
                assert f"{name}_{width}.{fmt}" in names
    assert {"table1.csv", "table1.tex"} <= names
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temporary files left


def test_second_run_is_byte_identical_even_after_rcparams_change(first_build, tmp_path):
    out, written = first_build
    # Global settings a notebook or user might have changed must not reach the files.
    with mpl.rc_context({"font.size": 14, "lines.linewidth": 3, "figure.facecolor": "none"}):
        from kanalysis import cli

        assert cli.main(["figures", "--out", str(tmp_path)]) == 0
    for path in written:
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_png_is_300_dpi_at_journal_widths(first_build):
    from PIL import Image

    out, _ = first_build
    for width in ("single", "double"):
        with Image.open(out / f"fig2_lsmeans_{width}.png") as img:
            assert img.size[0] == pytest.approx(JOURNAL_WIDTHS[width] * 300, abs=2)
            assert img.info["dpi"][0] == pytest.approx(300, abs=1)


def test_strict_privacy_draws_no_individual_courses(tmp_path, first_build):
    out, _ = first_build
    written = figures.build_paper_figures(
        out=tmp_path,
        figures=["fig1_trajectories"],
        widths=["single"],
        formats=("svg",),
        privacy="strict",
    )
    strict_svg = written[0].read_text()
    normal_svg = (out / "fig1_trajectories_single.svg").read_text()
    assert strict_svg.count("<path") < normal_svg.count("<path") / 3


def test_unknown_figure_or_width(tmp_path):
    with pytest.raises(ConfigurationError, match="fig9"):
        figures.build_paper_figures(out=tmp_path, figures=["fig9"])
    with pytest.raises(ConfigurationError, match="triple"):
        figures.build_paper_figures(out=tmp_path, widths=["triple"])
    with pytest.raises(ConfigurationError, match="cohort_path"):
        figures.build_paper_figures(cohort_path=tmp_path / "none", out=tmp_path)
