#!/usr/bin/env bash
# Remakes every picture in samples/outputs/ with the exact commands the README shows.
# Run from the repository root with the package installed (.venv/bin on PATH or activated).
set -euo pipefail
cd "$(dirname "$0")/.."
M=${MULTISCALE:-multiscale}
S=samples/sources
O=samples/outputs
mkdir -p "$O"
# The README's set-up command (256², defaults).
$M synthesize -s $S/gravel.png -W 256 -H 256 -o $O/gravel_texture.png --overwrite -q
# One texture per sample source, larger than the source crop shown beside it.
for name in brick grass hubble_field; do
  $M synthesize -s $S/$name.png -W 320 -H 320 -o $O/${name}_texture.png --overwrite -q
done
# A large texture (automatic stages: 128², 256², 512², then 1024², the finest octave added at each), timed.
/usr/bin/env time -f "brick_1024: %e s" $M synthesize -s $S/brick.png -W 1024 -H 1024 -o $O/brick_1024.png --overwrite -q
# Tileable versus ordinary, each shown tiled 2×2 by samples/tile_preview.py.
$M synthesize -s $S/brick.png -W 192 -H 192 --tileable -o $O/brick_tile.png --overwrite -q
$M synthesize -s $S/brick.png -W 192 -H 192 -o $O/brick_plain.png --overwrite -q
# A looping animation: 8 frames, 128².
$M synthesize -s $S/hubble_field.png -W 128 -H 128 --frames 8 --loop --frame-weight 2 --max-iter 120 \
  -o $O/hubble_loop.png --animation $O/hubble_loop.webp --overwrite -q
python samples/tile_preview.py $O/brick_tile.png $O/brick_plain.png
# Style transfer (samples/style/PROVENANCE.md): the defaults, two styles with the content's
# colours kept, and two more pairings that show the style's palette arriving.
T=samples/style
$M stylize -c $T/chelsea.png -s $S/hubble_field.png -W 384 -o $T/outputs/chelsea_hubble.png --overwrite -q
$M stylize -c $T/chelsea.png -s $S/gravel.png -s $S/brick.png --style-weights 0.7,0.3 --preserve-color luminance \
  -W 384 -o $T/outputs/chelsea_gravel_brick_luminance.png --overwrite -q
$M stylize -c $T/chelsea.png -s $S/brick.png -W 384 -o $T/outputs/chelsea_brick.png --overwrite -q
$M stylize -c $S/grass.png -s $S/hubble_field.png -W 384 -o $T/outputs/grass_hubble.png --overwrite -q
