"""Write IMAGE.tiled.png: the image repeated 2×2, to show whether seams appear."""

import sys
from pathlib import Path

from PIL import Image

for arg in sys.argv[1:]:
    path = Path(arg)
    with Image.open(path) as im:
        w, h = im.size
        out = Image.new(im.mode, (2 * w, 2 * h))
        for dx in (0, w):
            for dy in (0, h):
                out.paste(im, (dx, dy))
    out.save(path.with_name(path.stem + ".tiled.png"))
