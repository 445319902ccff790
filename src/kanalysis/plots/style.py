"""One figure style for every kanalysis plot: palette, rc settings, journal sizes, deterministic saving.

The style follows the tueplots principle of *no hidden state*: :func:`rc_params` returns a plain
dictionary, :func:`style_context` applies it inside a ``with`` block only, and :func:`use_style`
applies it globally only when asked to. Colours come from the Okabe-Ito palette, which stays
distinguishable under the common forms of colour-vision deficiency.

:func:`save_figure` writes PDF, SVG and PNG files whose bytes depend only on the figure: no dates,
no software versions and a fixed SVG hash salt, so that regenerating a paper's figures from the same
data gives identical files (and clean diffs).

References
----------
Okabe M, Ito K (2008). Color Universal Design (CUD): how to make figures and presentations that
are friendly to colorblind people. https://jfly.uni-koeln.de/color/
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
from cycler import cycler

from kanalysis._io import atomic_open
from kanalysis.errors import ConfigurationError
from kanalysis.rules import CONTROL_ARM_NAMES, control_arm

__all__ = [
    "ARM_ORDER_HINTS",
    "FIGURE_FORMATS",
    "JOURNAL_WIDTHS",
    "OKABE_ITO",
    "OKABE_ITO_CYCLE",
    "SVG_HASH_SALT",
    "arm_colors",
    "control_arm",
    "figure",
    "rc_params",
    "save_figure",
    "style_context",
    "use_style",
]

#: Okabe & Ito (2008) colour-blind-safe palette, by colour name.
OKABE_ITO: dict[str, str] = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
}

#: Order in which the palette is cycled. Yellow goes last: it is hard to see on white.
OKABE_ITO_CYCLE: tuple[str, ...] = (
    OKABE_ITO["blue"],
    OKABE_ITO["vermillion"],
    OKABE_ITO["bluish_green"],
    OKABE_ITO["orange"],
    OKABE_ITO["reddish_purple"],
    OKABE_ITO["sky_blue"],
    OKABE_ITO["black"],
    OKABE_ITO["yellow"],
)

#: Figure widths in inches: journal single column (~89 mm), 1.5 column and double column (~183 mm).
JOURNAL_WIDTHS: dict[str, float] = {"single": 3.5, "onehalf": 5.5, "double": 7.2}

#: Default output formats of :func:`save_figure`.
FIGURE_FORMATS: tuple[str, ...] = ("pdf", "svg", "png")

#: Fixed salt for the ids matplotlib writes into SVG files (otherwise random per process).
SVG_HASH_SALT = "kanalysis"

#: Names that mark a control arm (case-insensitive substrings, :data:`kanalysis.rules.
#: CONTROL_ARM_NAMES`); control arms are drawn in black so the active arms keep the strongest
#: colours. Kept under its old name for one release.
ARM_ORDER_HINTS: tuple[str, ...] = CONTROL_ARM_NAMES

_FIXED_EPOCH = "0"


def rc_params(font_size: float = 8.0, *, base: str = "sans-serif") -> dict[str, Any]:
    """Return the kanalysis matplotlib settings as a plain dictionary.

    Parameters
    ----------
    font_size : float, default 8
        Body font size in points; tick labels and legends are 1 pt smaller, titles 1 pt larger,
        which keeps every text within the 7-9 pt range journals ask for at the default.
    base : {"sans-serif", "serif"}
        Font family. DejaVu fonts come with matplotlib, so the output is the same on every machine.

    Returns
    -------
    dict
        Suitable for ``matplotlib.rcParams.update`` or ``matplotlib.rc_context``.
    """
    if base not in ("sans-serif", "serif"):
        raise ConfigurationError(
            f"The value for `base` must be 'sans-serif' or 'serif', but {base!r} was passed."
        )
    small = font_size - 1
    return {
        "font.family": base,
        # DejaVu first: it ships with matplotlib, so the files do not depend on installed fonts.
        "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
        "font.serif": ["DejaVu Serif", "Times New Roman"],
        "font.size": font_size,
        "axes.titlesize": font_size + 1,
        "axes.labelsize": font_size,
        "xtick.labelsize": small,
        "ytick.labelsize": small,
        "legend.fontsize": small,
        "legend.title_fontsize": small,
        "figure.titlesize": font_size + 1,
        "axes.prop_cycle": cycler(color=list(OKABE_ITO_CYCLE)),
        "axes.linewidth": 0.6,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlelocation": "left",
        "xtick.major.width": 0.6,
        "ytick.major.width": 0.6,
        "xtick.major.size": 3.0,
        "ytick.major.size": 3.0,
        "lines.linewidth": 1.2,
        "lines.markersize": 4.0,
        "patch.linewidth": 0.6,
        "grid.linewidth": 0.4,
        "grid.alpha": 0.4,
        "legend.frameon": False,
        "image.cmap": "cividis",
        "figure.dpi": 100,
        # Opaque white: Jupyter's inline backend makes figures transparent otherwise.
        "figure.facecolor": "white",
        "figure.edgecolor": "white",
        "savefig.facecolor": "white",
        "savefig.edgecolor": "white",
        "savefig.transparent": False,
        "figure.constrained_layout.use": True,
        "savefig.dpi": 300,
        "savefig.bbox": None,
        # Editable text in vector files: TrueType in PDF, real <text> in SVG.
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "svg.fonttype": "none",
        "svg.hashsalt": SVG_HASH_SALT,
    }


@contextlib.contextmanager
def style_context(
    font_size: float = 8.0, *, reset: bool = False, **overrides: Any
) -> Iterator[dict[str, Any]]:
    """Apply the kanalysis style inside a ``with`` block only.

    Parameters
    ----------
    font_size : float, default 8
        Passed to :func:`rc_params`.
    reset : bool, default False
        Start from matplotlib's defaults rather than the current settings, so that nothing set
        elsewhere in the process (a notebook's inline backend, another style) reaches the
        figures: what reproducible paper figures need.
    **overrides
        rcParams to change on top of the style; names contain dots, so pass them unpacked from a
        dict: ``style_context(**{"axes.grid": True})``.

    Yields
    ------
    dict
        The settings in force.
    """
    params = rc_params(font_size)
    params.update(overrides)
    with contextlib.ExitStack() as stack:
        if reset:
            stack.enter_context(plt.style.context("default"))
        stack.enter_context(mpl.rc_context(params))
        yield params


def use_style(font_size: float = 8.0, **overrides: Any) -> dict[str, Any]:
    """Apply the kanalysis style globally (for notebooks) and return the settings applied."""
    params = rc_params(font_size)
    params.update(overrides)
    mpl.rcParams.update(params)
    return params


def arm_colors(arms: Iterable[Any]) -> dict[Any, str]:
    """Map treatment arms to colours, the same way in every figure.

    Arms are taken in sorted order so that the mapping does not depend on row order; control arms
    (placebo, midazolam, saline, no maintenance) are drawn in black, active arms take the palette
    in :data:`OKABE_ITO_CYCLE` order.

    Parameters
    ----------
    arms : iterable
        Arm labels; duplicates and missing values are ignored.

    Returns
    -------
    dict
        Arm label -> hex colour.
    """
    unique = sorted({a for a in arms if a is not None and a == a}, key=str)
    active_palette = [c for c in OKABE_ITO_CYCLE if c != OKABE_ITO["black"]]
    colors: dict[Any, str] = {}
    i = 0
    control = control_arm(unique)
    for arm in unique:
        if control is not None and arm == control:
            colors[arm] = OKABE_ITO["black"]
        else:
            colors[arm] = active_palette[i % len(active_palette)]
            i += 1
    return colors


def figure(
    width: str | float = "single",
    aspect: float = 0.75,
    *,
    nrows: int = 1,
    ncols: int = 1,
    font_size: float = 8.0,
    **subplots_kw: Any,
):
    """Create a styled figure at a journal width.

    Parameters
    ----------
    width : {"single", "onehalf", "double"} or float
        Column width name from :data:`JOURNAL_WIDTHS`, or a width in inches.
    aspect : float, default 0.75
        Height / width.
    nrows, ncols : int
        Subplot grid, as in :func:`matplotlib.pyplot.subplots`.
    font_size : float
        Passed to :func:`rc_params`.
    **subplots_kw
        Passed to :func:`matplotlib.pyplot.subplots` (``sharex``, ``sharey``, ...).

    Returns
    -------
    fig, ax
        The figure and its Axes (an array when ``nrows * ncols > 1``).
    """
    if isinstance(width, str):
        if width not in JOURNAL_WIDTHS:
            raise ConfigurationError(
                f"The value for `width` must be one of {sorted(JOURNAL_WIDTHS)} or a number of "
                f"inches, but {width!r} was passed."
            )
        width_in = JOURNAL_WIDTHS[width]
    else:
        width_in = float(width)
    if not (width_in > 0 and aspect > 0):
        raise ConfigurationError("`width` and `aspect` must be positive.")
    with style_context(font_size):
        fig, ax = plt.subplots(nrows, ncols, figsize=(width_in, width_in * aspect), **subplots_kw)
    return fig, ax


def _metadata_for(fmt: str) -> dict[str, Any]:
    # Everything that would make bytes differ between runs: dates and software versions.
    if fmt == "png":
        return {"Software": None}
    if fmt == "pdf":
        return {"Creator": None, "Producer": None, "CreationDate": None}
    if fmt == "svg":
        return {"Date": None, "Creator": None}
    if fmt in ("ps", "eps"):
        return {"Creator": None}
    return {}


@contextlib.contextmanager
def _fixed_source_date_epoch() -> Iterator[None]:
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = _FIXED_EPOCH
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old


def save_figure(
    fig,
    path_stem: str | os.PathLike[str],
    formats: Sequence[str] = FIGURE_FORMATS,
    dpi: int = 300,
    **savefig_kw: Any,
) -> list[Path]:
    """Save a figure in several formats with byte-for-byte reproducible output.

    Each file is written to a temporary file in the target folder and moved into place with
    :func:`os.replace`, so a reader never sees a half-written figure.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Figure to save.
    path_stem : str or path
        Path without extension; ``"figures/fig1"`` gives ``figures/fig1.pdf`` etc. Parent folders are
        created.
    formats : sequence of str, default ("pdf", "svg", "png")
        Output formats understood by matplotlib.
    dpi : int, default 300
        Resolution of raster output (PNG); vector formats ignore it except for embedded images.
    **savefig_kw
        Passed on to :meth:`matplotlib.figure.Figure.savefig` (e.g. ``bbox_inches``).

    Returns
    -------
    list of pathlib.Path
        The files written, in the order of ``formats``.

    Notes
    -----
    Determinism comes from: PNG ``Software=None``; PDF ``Creator/Producer/CreationDate=None``; SVG
    ``Date=None`` and a fixed ``svg.hashsalt``; ``SOURCE_DATE_EPOCH=0`` while saving. Raster output can
    still differ between matplotlib / FreeType versions, so pin those for a paper.
    """
    if isinstance(formats, str):
        formats = (formats,)
    stem = Path(path_stem)
    if stem.suffix.lstrip(".").lower() in {"pdf", "svg", "png", "eps", "ps"}:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    supported = set(fig.canvas.get_supported_filetypes())
    written: list[Path] = []
    with (
        _fixed_source_date_epoch(),
        mpl.rc_context({"svg.hashsalt": SVG_HASH_SALT}),
    ):
        for fmt in formats:
            fmt = fmt.lower().lstrip(".")
            if fmt not in supported:
                raise ConfigurationError(
                    f"Figure format {fmt!r} is not supported; use one of {sorted(supported)}."
                )
            target = stem.parent / f"{stem.name}.{fmt}"
            with atomic_open(target) as handle:
                fig.savefig(handle, format=fmt, dpi=dpi, metadata=_metadata_for(fmt), **savefig_kw)
            written.append(target)
    return written
