"""Pillow's side of bench/variants.py, with the same arguments as examples/make_variants.rs:

    .venv/bin/python thumbnail.py INPUT OUTPUT_DIR [thumb:256,display:1280] [webp,jpeg]

The input is opened once. `Image.draft` asks libjpeg-turbo for its DCT scaling to the
smallest size whose longest side is at least twice the largest preset (as ours; what
`Image.thumbnail` asks by itself for one preset: Pillow's way to decode a JPEG small),
`ImageOps.exif_transpose` puts it upright, then each preset is a copy made with
`Image.thumbnail` (fit inside, never enlarged) with `Resampling.LANCZOS` (Lanczos3;
thumbnail's default is BICUBIC) and its default reducing_gap of 2.0 (a box reduce by a
whole factor first, then Lanczos for the rest).
Saved at quality 80 (JPEG: 4:2:0, no Huffman optimisation; WebP: method 4), with no
EXIF, as Pillow saves by default.
"""

import os
import sys

from PIL import Image, ImageOps


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit("usage: thumbnail.py INPUT OUTPUT_DIR [name:px,...] [webp,jpeg]")
    source, out = args[0], args[1]
    presets = [(name, int(px)) for name, px in
               (p.split(":") for p in (args[2] if len(args) > 2 else "thumb:256,display:1280").split(","))]
    formats = (args[3] if len(args) > 3 else "webp,jpeg").split(",")
    largest = max(px for _, px in presets)
    with Image.open(source) as image:
        # Both sides at least twice the largest preset's box, as Image.thumbnail asks itself.
        w, h = image.size
        longest = max(w, h)
        image.draft("RGB", (-(-2 * largest * w // longest), -(-2 * largest * h // longest)))
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        for name, px in presets:
            variant = image.copy()
            variant.thumbnail((px, px), Image.Resampling.LANCZOS)
            for fmt in formats:
                path = os.path.join(out, f"{name}.{fmt}")
                if fmt == "jpeg":
                    variant.convert("RGB").save(path, "JPEG", quality=80)
                else:
                    variant.save(path, "WEBP", quality=80)
                print(f"{path} {variant.width}x{variant.height} {os.path.getsize(path)} B")


if __name__ == "__main__":
    main()
