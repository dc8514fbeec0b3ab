"""``multiscale grams``: build, merge and inspect Gram descriptor files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from multiscale.config import DESCRIPTOR_DEFAULTS as D
from multiscale.config import DescriptorConfig
from multiscale.descriptors.descriptor import keep_all_nbytes
from multiscale.layers import layer_channels

from .errors import Interrupted, clean_errors
from .options import max_grams_bytes_option, max_input_pixels_option, measurement_options
from .progress import build_with_progress

#: Files named one by one in ``grams info`` before "… and N more".
INFO_SOURCES_SHOWN = 10

_KEEP_500_GIB = (
    keep_all_nbytes(count=500, octaves=D.octaves, channels={name: layer_channels(name) for name in D.layers})
    / 1024**3
)


@click.group("grams")
def grams() -> None:
    """Build, merge and inspect Gram descriptor files (.grams.npz).

    A descriptor summarises any number of photos by running sums of their
    multiscale Gram matrices; `multiscale synthesize --grams FILE` makes a
    texture from it without the photos.
    """


@grams.command(
    "build",
    epilog="""\b
Examples:
  multiscale grams build photos/oak/ -o oak.grams.npz --octaves 4
  multiscale grams build 'photos/**/*.jpg' --recursive -o all.grams.npz --keep-grams
  multiscale grams build photos/ -o oak.grams.npz --workers 4
  multiscale grams build photos/oak/ -o oak.grams.npz --statistics gram,sliced
  multiscale grams build /shared/photos/ -o oak.grams.npz --dask tcp://scheduler:8786
""",
)
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), metavar="FILE.grams.npz",
    help="Descriptor file to write.",
)  # fmt: skip
@click.option(
    "-r", "--recursive", is_flag=True, help="Search folders recursively (** in patterns spans folders)."
)
@measurement_options
@click.option(
    "--keep-grams", is_flag=True,
    help="Also keep every image's Grams (needed by --join affine-invariant). Costs images × octaves × "
    f"Σ channels² × 8 bytes: {_KEEP_500_GIB:.1f} GiB for 500 photos with the default octaves and layers.",
)  # fmt: skip
@click.option(
    "--weights-file", type=click.Path(dir_okay=False), default=None, metavar="FILE.csv",
    help="Per-image weights (not the network's --weights): lines PATH,WEIGHT, relative paths taken "
    "from the CSV's folder; unlisted images weigh 1.",
)  # fmt: skip
@click.option(
    "--dask", "dask_address", default=None, metavar="ADDRESS",
    help="Measure on a running Dask distributed cluster (e.g. tcp://host:8786). Workers must see the "
    "photos at the same absolute paths. Needs `pip install 'multiscale[dask]'`.",
)  # fmt: skip
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, metavar="N",
    help="Start a local Dask cluster of N worker processes for this build.",
)  # fmt: skip
@click.option(
    "--chunk-size", type=click.IntRange(min=1), default=None, metavar="N",
    help="Images per Dask task (default: about 4 tasks per worker, at most 64 images each).",
)  # fmt: skip
@max_input_pixels_option
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar or summary; errors and skipped files only."
)
@clean_errors
def build(
    paths: tuple[str, ...],
    output: str,
    recursive: bool,
    keep_grams: bool,
    weights_file: str | None,
    dask_address: str | None,
    workers: int | None,
    chunk_size: int | None,
    max_input_pixels: int,
    overwrite: bool,
    quiet: bool,
    **options: Any,
) -> None:
    """Build a Gram descriptor over the photos in PATHS (files, folders, glob patterns).

    Photos are read one at a time, so memory does not grow with their number.
    Files that cannot be used (unreadable, not an image, too small for the
    octaves) are skipped and listed with the reason; none usable is an error.
    With --statistics gram,sliced the file also holds a quantile bank, so that
    `synthesize --grams FILE --statistics sliced` works from it; with
    --statistics gram,mean the images' mean feature vectors, for
    `synthesize --grams FILE --statistics gram,mean`.
    """
    from multiscale.io import check_writable

    if dask_address is not None and workers is not None:
        raise click.UsageError(
            "give --dask ADDRESS (a running cluster) or --workers N (a local one), not both"
        )
    if chunk_size is not None and dask_address is None and workers is None:
        raise click.UsageError("--chunk-size applies to Dask builds only (--dask or --workers)")
    options["layers"] = tuple(options["layers"])
    config = DescriptorConfig(**options)
    check_writable(output, overwrite=overwrite)
    result = build_with_progress(
        list(paths),
        quiet=quiet,
        config=config,
        recursive=recursive,
        weights_file=weights_file,
        keep_all=keep_grams,
        max_input_pixels=max_input_pixels,
        dask=dask_address,
        workers=workers,
        chunk_size=chunk_size,
    )
    result.descriptor.save(output, overwrite=overwrite)
    if result.interrupted:
        raise Interrupted(
            f"interrupted after {len(result.used)} image(s); their descriptor is in {output} — build the "
            "rest into another file and join them with `multiscale grams merge`"
        )
    if not quiet:
        d = result.descriptor
        click.echo(
            f"{output}: {d.count} image(s), {config.octaves} octave(s) × {len(config.layers)} layer(s), "
            f"{_size(Path(output).stat().st_size)}, in {result.elapsed_s:.1f} s",
            err=True,
        )


@grams.command(
    "merge",
    epilog="""\b
Example:
  multiscale grams merge oak.grams.npz more_oak.grams.npz -o all_oak.grams.npz
""",
)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), metavar="FILE.grams.npz",
    help="Merged descriptor file to write.",
)  # fmt: skip
@max_grams_bytes_option
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="No summary; errors only.")
@clean_errors
def merge(inputs: tuple[str, ...], output: str, max_grams_bytes: int, overwrite: bool, quiet: bool) -> None:
    """Merge descriptor files exactly: as if one build had read all their photos.

    Sums, counts and weights add (never a mean of means). The files must
    have been built with the same network weights and measurement options;
    otherwise every difference is listed.
    """
    from multiscale.descriptors.descriptor import GramDescriptor
    from multiscale.io import check_writable

    check_writable(output, overwrite=overwrite)
    descriptors = [GramDescriptor.load(p, max_bytes=max_grams_bytes) for p in inputs]
    merged = GramDescriptor.merge_all(descriptors)
    merged.save(output, overwrite=overwrite)
    if not quiet:
        click.echo(f"{output}: {merged.count} image(s) from {len(descriptors)} descriptor(s)", err=True)


@grams.command("info")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON (every source listed).")
@max_grams_bytes_option
@clean_errors
def info(file: str, as_json: bool, max_grams_bytes: int) -> None:
    """Describe a descriptor file: what it measured, from which photos, which joins it allows.

    The file is fully checked first (sizes, values, symmetry, consistency);
    a damaged or hostile file is refused with the reason.
    """
    from multiscale.descriptors.descriptor import GramDescriptor

    data = GramDescriptor.load(file, max_bytes=max_grams_bytes).info()
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(format_info(data))


def format_info(data: dict[str, Any]) -> str:
    """The readable text of ``grams info`` from :meth:`GramDescriptor.info`."""
    m = data["descriptor"]
    scale = (
        f"sources resized to {m['source_width']} px wide"
        if m["source_width"] is not None
        else f"sources scaled by {m['source_scale']:g}"
    )
    joins = "mean, log-euclidean" + (", affine-invariant" if data["keep_all"] else "")
    bank = data.get("bank")
    sliced = (
        "no (--statistics sliced unavailable; rebuild with --statistics gram,sliced)"
        if bank is None
        else f"quantile bank of {bank['draws']} draws × {bank['levels']} levels (--statistics sliced)"
    )
    means = (
        "yes (--statistics mean)"
        if data.get("means")
        else "no (--statistics mean unavailable; rebuild with --statistics gram,mean)"
    )
    kept = (
        "yes (every image's Grams)"
        if data["keep_all"]
        else "no (affine-invariant join unavailable; rebuild with --keep-grams)"
    )
    color = data.get("mean_color")
    rows = [
        ("file", f"{data['path']} ({_size(data['file_bytes'])}, format version {data['version']})"),
        ("images", f"{data['count']} (total weight {data['total_weight']:g})"),
        ("backbone", f"{data['backbone']} (weights sha256 {data['weights_sha256'][:16]}…)"),
        ("octaves", str(m["octaves"])),
        ("layers", ", ".join(f"{layer} ({data['channels'][layer]} ch)" for layer in m["layers"])),
        *(
            [
                (
                    "coarse layers",
                    ", ".join(f"{layer} ({data['channels'][layer]} ch)" for layer in m["coarse_layers"])
                    + f" from octave {m['coarse_from']} on",
                )
            ]
            if m.get("coarse_layers")
            else []
        ),
        ("pooling", m["pooling"]),
        ("padding", m["padding"]),
        ("scale", scale),
        ("kept Grams", kept),
        ("joins", joins),
        ("sliced", sliced),
        ("means", means),
        ("mean colour", "not recorded" if color is None else " ".join(f"{c:.3f}" for c in color) + " (RGB)"),
        ("memory", _size(data["memory_bytes"])),
        ("created by", ", ".join(f"{k} {v}" for k, v in data["created"].items())),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    sources = data["sources"]
    lines.append(f"sources ({len(sources)}):")
    for s in sources[:INFO_SOURCES_SHOWN]:
        lines.append(f"  {s['name']}  weight {s['weight']:g}  sha256 {s['sha256'][:12]}…")
    if len(sources) > INFO_SOURCES_SHOWN:
        lines.append(f"  … and {len(sources) - INFO_SOURCES_SHOWN} more (--json lists all)")
    return "\n".join(lines)


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "not from a file"
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if nbytes >= factor:
            return f"{nbytes / factor:.1f} {unit}"
    return f"{nbytes} bytes"
