"""Terms of the image alone, added to any objective: where a new one is declared.

A term that needs no network (a function of the output's pixels, evaluated
in numpy on the whole image, so tiled runs use it unchanged) joins the
objective a job builds through :func:`image_terms` (synthesis) or
:func:`style_image_terms` (style transfer), wrapped around the network
objective by :class:`~multiscale.objectives.base.WithImageTerms`. Today
there are two: the spectrum constraint (:mod:`multiscale.objectives.spectrum`)
and the palette term (:mod:`multiscale.objectives.palette`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ..config import StyleConfig, SynthesisConfig
from ..errors import ConfigError
from .base import ImageTerm
from .palette import PaletteTarget, palette_loss
from .spectrum import border_taper as spectrum_border_taper
from .spectrum import example_spectrum, spectrum_loss


def image_terms(
    config: SynthesisConfig,
    *,
    exemplars: Sequence[np.ndarray],
    height: int,
    width: int,
    border_taper: bool = False,
) -> list[ImageTerm]:
    """The image terms a synthesis of an H×W output adds to its objective.

    Parameters
    ----------
    config : SynthesisConfig
        Its ``spectrum_weight`` resolved (a float, not ``None``).
    exemplars : sequence of np.ndarray float32 (h, w, 3) in [0, 1]
        The source images as measured (empty for descriptor files).
    border_taper : bool
        The spectrum constraint sees the image through
        :func:`~multiscale.objectives.spectrum.border_taper` (the first part of a
        last stage, ``config.spectrum_taper``).

    Raises
    ------
    ConfigError
        A term that needs source images when there are none.
    """
    terms = []
    weight = config.spectrum_weight
    if weight is None:
        raise ValueError("spectrum_weight must be resolved before the image terms are built")
    if weight > 0:
        if not exemplars:
            raise ConfigError(
                "spectrum_weight",
                "the spectrum constraint needs source images (-s FILE), not descriptor files",
            )
        measured = functools.partial(
            example_spectrum, exemplars, height=height, width=width, peaks=config.spectrum_peaks,
            long_waves=config.spectrum_long_waves,
        )  # fmt: skip
        spectrum = measured()
        if border_taper:
            taper = spectrum_border_taper(height, width)
            centre = spectrum[0, 0].real / (height * width)  # the target's mean colour
            fn = functools.partial(spectrum_loss, spectrum=measured(taper=taper), taper=taper, centre=centre)
        else:
            fn = functools.partial(spectrum_loss, spectrum=spectrum)
        terms.append(ImageTerm("spectrum", float(weight), fn))
    return terms


def style_image_terms(config: StyleConfig, *, palette: PaletteTarget | None) -> list[ImageTerm]:
    """The image terms a style transfer adds to its objective: the palette term, where the run
    has it (:attr:`~multiscale.config.StyleConfig.uses_palette_term`; ``palette``, the styles'
    blended colours, is then given)."""
    if palette is None or not config.uses_palette_term:
        return []
    return [
        ImageTerm("palette", float(config.palette_weight), functools.partial(palette_loss, target=palette))
    ]
