"""Makes the PIL reference images in this folder (run with Pillow + numpy; they are checked in).

resize_*:  Image.resize(size, Image.BICUBIC) of noise_53x37.png / noise_160x120.png / noise_1x40.png,
           the exact filter ClipImageProcessor reproduces (file name: resize_<src>_to_<W>x<H>.png).
mode_*:    images in PIL modes RGBA, LA, L, P (with transparency), 1, saved as PNG, and
           convert_*: their Image.open(...).convert("RGB").
jpeg_*/webp_*: encoded by PIL; decoded_*: PIL's Image.open(...).convert("RGB") of them.
"""
import numpy as np
from PIL import Image

rng = np.random.default_rng(1234)

def save(a, name, mode=None):
    Image.fromarray(a, mode).save(name)

# Sources for resizing: noise (worst case for rounding) with a gradient so values span 0..255.
srcs = {}
for w, h in [(53, 37), (160, 120), (1, 40)]:
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) * 255 / max(w + h - 2, 1)], -1)
    a = np.clip(base + rng.normal(0, 60, base.shape), 0, 255).astype(np.uint8)
    name = f"noise_{w}x{h}.png"
    save(a, name)
    srcs[(w, h)] = name

cases = {
    (53, 37): [(20, 14), (101, 77), (53, 11), (17, 37), (336, 5), (1, 1), (7, 90), (52, 36), (54, 38)],
    (160, 120): [(29, 19), (84, 63), (112, 84)],
    (1, 40): [(3, 12), (1, 7)],
}
for (w, h), outs in cases.items():
    im = Image.open(srcs[(w, h)])
    for ow, oh in outs:
        im.resize((ow, oh), Image.BICUBIC).save(f"resize_{w}x{h}_to_{ow}x{oh}.png")

# Modes converted to RGB.
h, w = 12, 16
rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
rgba[0, :, 3] = 0      # fully transparent row with colour underneath
rgba[1, :, 3] = 255
Image.fromarray(rgba, "RGBA").save("mode_rgba.png")
la = rng.integers(0, 256, (h, w, 2), dtype=np.uint8)
Image.fromarray(la, "LA").save("mode_la.png")
l = rng.integers(0, 256, (h, w), dtype=np.uint8)
Image.fromarray(l, "L").save("mode_l.png")
p = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").quantize(16)
p.info["transparency"] = 3
p.save("mode_p.png", transparency=3)
one = Image.fromarray(rng.integers(0, 2, (h, w), dtype=np.uint8) * 255, "L").convert("1")
one.save("mode_1.png")
for m in ["rgba", "la", "l", "p", "1"]:
    Image.open(f"mode_{m}.png").convert("RGB").save(f"convert_{m}.png")

# Lossy formats: what PIL (libjpeg-turbo, libwebp) decodes.
yy, xx = np.mgrid[0:40, 0:48]
smooth = np.stack([xx * 5, yy * 6, 255 - xx * 3 - yy * 2], -1)
smooth = np.clip(smooth + rng.normal(0, 25, smooth.shape), 0, 255).astype(np.uint8)
Image.fromarray(smooth).save("jpeg_rgb.jpg", quality=90)                    # 4:2:0
Image.fromarray(smooth).save("jpeg_rgb444.jpg", quality=95, subsampling=0)  # 4:4:4
Image.fromarray(smooth[..., 0]).save("jpeg_gray.jpg", quality=90)
Image.fromarray(smooth).save("webp_lossy.webp", quality=80)
Image.fromarray(smooth).save("webp_lossless.webp", lossless=True)
for f in ["jpeg_rgb.jpg", "jpeg_rgb444.jpg", "jpeg_gray.jpg", "webp_lossy.webp", "webp_lossless.webp"]:
    Image.open(f).convert("RGB").save("decoded_" + f.rsplit(".", 1)[0] + ".png")
