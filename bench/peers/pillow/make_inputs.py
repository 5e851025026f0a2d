"""The inputs of bench/variants.py: a synthetic landscape that looks like a photograph to an
encoder and a resizer (smooth sky gradients and clouds, ridges with rock texture, a textured
field, sharp-edged houses with windows, trees, a fence of thin posts, sensor noise), written
as a JPEG (quality 90, 4:2:0, with a small EXIF block: camera make and model, orientation 1)
or as an RGB PNG.

    .venv/bin/python make_inputs.py OUTPUT WIDTH HEIGHT [SEED]

The format follows OUTPUT's extension. The same arguments give the same file.
"""

import sys

import numpy as np
from PIL import Image


def smooth_noise(rng, w, h, cells_x, cells_y):
    """Value noise: a random grid of (cells_y + 1) x (cells_x + 1) values in [0, 1],
    stretched bicubically to w x h."""
    grid = rng.random((cells_y + 1, cells_x + 1), dtype=np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC))


def fractal(rng, w, h, cells, octaves, aspect=1.0, persistence=0.5):
    """Octaves of value noise, each twice as fine and `persistence` times as strong, scaled
    to a mean of 0.5 and a standard deviation of 0.2."""
    total = np.zeros((h, w), np.float32)
    amplitude = 1.0
    for _ in range(octaves):
        cx = max(1, min(w - 1, int(cells * aspect)))
        cy = max(1, min(h - 1, int(cells * h / w)))
        total += amplitude * smooth_noise(rng, w, h, cx, cy)
        amplitude *= persistence
        cells *= 2
    total -= total.mean()
    total *= 0.2 / max(float(total.std()), 1e-6)
    total += 0.5
    return total


def ridge(rng, w, base, height, waves):
    """A ridge line: for each column, the row (as a fraction of the height) of the top."""
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)
    y = np.zeros(w, np.float32)
    for k in range(waves):
        freq = 1.5 * 2.1 ** k
        y += np.sin(2 * np.pi * freq * x + rng.uniform(0, 2 * np.pi)) / 1.7 ** k
    return base - height * y / 2.0


def paint(img, mask, colour, texture=None, strength=0.0):
    """Lays `colour` (RGB 0-255), modulated by a texture, over `img` where mask (0-1) says."""
    m = mask[..., None]
    c = np.asarray(colour, np.float32)[None, None, :]
    if texture is not None:
        c = c * (1.0 + strength * (texture[..., None] - 0.5))
    img *= 1.0 - m
    img += m * c


def scene(w, h, seed):
    rng = np.random.default_rng(seed)
    s = w / 6000.0  # a pixel size that scales with the picture
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    rows = np.arange(h, dtype=np.float32)[:, None]

    # Sky: deep blue at the top to haze at the horizon, a sun glow, soft clouds.
    t = np.clip(yy / 0.5, 0.0, 1.0) ** 0.8
    top, low = np.array([38, 86, 168], np.float32), np.array([196, 214, 232], np.float32)
    img = np.broadcast_to(top + (low - top) * t[..., None], (h, w, 3)).copy()
    sun = np.exp(-(((xx - 0.74) * w / h) ** 2 + (yy - 0.16) ** 2) / 0.012)
    img += sun[..., None] * np.array([70, 55, 20], np.float32)
    clouds = fractal(rng, w, h, 6, 6, aspect=0.6)
    cover = np.clip((clouds - 0.55) * 3.0, 0.0, 1.0) * np.clip(1.2 - yy / 0.45, 0.0, 1.0)
    paint(img, cover, (242, 244, 248), fractal(rng, w, h, 40, 3), 0.25)

    # Far mountains, then near hills: rock and grass texture, hazier with distance.
    rock = fractal(rng, w, h, 60, 8, persistence=0.8)
    far = ridge(rng, w, 0.40, 0.14, 11)
    paint(img, np.clip((rows - far[None, :] * h) / (2 * s), 0, 1), (104, 118, 140), rock, 0.6)
    grass = fractal(rng, w, h, 200, 5, persistence=0.75)
    near = ridge(rng, w, 0.52, 0.08, 10)
    hills = np.clip((rows - near[None, :] * h) / (1.5 * s), 0, 1)
    paint(img, hills, (70, 112, 52), grass, 0.9)

    # The field: furrows closer together towards the horizon, fine grass texture.
    depth = np.clip((yy - 0.58) / 0.42, 1e-3, 1.0)
    furrows = 0.5 + 0.5 * np.sin(2 * np.pi * (xx - 0.5) * 90.0 / (0.15 + depth) + 40 * depth)
    field = np.clip((yy - 0.58) * h / (2 * s), 0, 1) * np.ones_like(xx)
    fine = fractal(rng, w, h, 900, 3, persistence=0.8)
    paint(img, field, (118, 128, 62), 0.6 * furrows + 0.4 * fine, 0.8)

    # A road to the horizon (sharp edges), its gravel texture.
    half = 0.005 + 0.12 * depth
    road = (np.abs(xx - 0.42 - 0.1 * (1 - depth)) < half) & (yy > 0.58)
    paint(img, road.astype(np.float32), (150, 138, 118), fine, 0.7)

    # Houses: walls, dark roofs, a grid of windows.
    for i in range(5):
        cx, base = rng.uniform(0.08, 0.9), rng.uniform(0.6, 0.75)
        size = 0.03 + 0.1 * (base - 0.58)
        x0, x1 = int((cx - size) * w), int((cx + size) * w)
        y1, y0 = int(base * h), int((base - size * 0.9 * w / h) * h)
        wall = rng.uniform(160, 235, 3)
        img[y0:y1, x0:x1] = wall * (0.9 + 0.2 * rock[y0:y1, x0:x1, None])
        roof_h = int(size * 0.5 * w)
        for r in range(roof_h):
            inset = int((x1 - x0) * 0.55 * r / roof_h)
            img[y0 - r, x0 - int(4 * s) + inset: x1 + int(4 * s) - inset] = (92, 40, 34)
        step = max(4, (x1 - x0) // 6)
        for wx in range(x0 + step // 2, x1 - step // 2, step):
            for wy in range(y0 + step // 2, y1 - step, step):
                img[wy: wy + step // 2, wx: wx + step // 2] = (40, 52, 66)

    # Trees: round crowns with leafy texture, dark trunks.
    leaves = fractal(rng, w, h, 500, 3, persistence=0.7)
    for i in range(14):
        cx, base = rng.uniform(0.02, 0.98), rng.uniform(0.55, 0.95)
        r = (0.01 + 0.06 * (base - 0.5)) * w
        trunk_w = max(2, int(r * 0.15))
        tx, ty = int(cx * w), int(base * h)
        img[ty - int(1.6 * r): ty, tx - trunk_w: tx + trunk_w] = (60, 44, 30)
        y0, y1 = max(0, int(ty - 2.6 * r)), min(h, int(ty - 0.4 * r))
        x0, x1 = max(0, int(tx - 1.2 * r)), min(w, int(tx + 1.2 * r))
        gy, gx = np.ogrid[y0:y1, x0:x1]
        d = np.sqrt((gx - tx) ** 2 + (gy - (ty - 1.5 * r)) ** 2) / r
        crown = np.clip((1.0 - d) * r / 3.0, 0.0, 1.0) * (leaves[y0:y1, x0:x1] > 0.35)
        sub = img[y0:y1, x0:x1]
        paint(sub, crown.astype(np.float32), (38, 84, 36), leaves[y0:y1, x0:x1], 1.2)

    # A fence across the foreground: thin posts and two rails.
    post, gap = max(2, int(6 * s)), max(10, int(70 * s))
    y_top, y_bottom = int(0.86 * h), int(0.95 * h)
    for x in range(0, w, gap):
        img[y_top:y_bottom, x: x + post] = (210, 200, 180)
    for y in (int(0.88 * h), int(0.92 * h)):
        img[y: y + max(2, int(5 * s)), :] = (200, 190, 170)

    # Vignetting and sensor noise.
    img *= (1.0 - 0.25 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2))[..., None]
    img += rng.standard_normal((h, w, 3), dtype=np.float32) * 3.0
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def main():
    out, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 7
    image = scene(w, h, seed)
    if out.lower().endswith((".jpg", ".jpeg")):
        exif = Image.Exif()
        exif[0x010F] = "Bench Camera Co."  # Make
        exif[0x0110] = "Synthetic 24"  # Model
        exif[0x0112] = 1  # Orientation: upright
        image.save(out, "JPEG", quality=90, exif=exif)
    else:
        image.save(out, "PNG")


if __name__ == "__main__":
    main()
