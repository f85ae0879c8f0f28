"""Packaging artwork from a `Design`: printed faces (logo, colour layout, text, barcode) and print defects.

Faces are printed at the pixel scale the photo will show them at, so that print defects (a halftone screen,
banding) keep their real period in the final photo instead of being averaged away by a later downscale.
The objects these faces are printed on (box, bottle, bag, tag) are drawn in `synth.objects`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from brandsentry.synth.brands import (
    TEXT_BOLD_FONT,
    TEXT_FONT,
    TEXT_ITALIC_FONT,
    Design,
    Emblem,
    font_path,
    rgb_of,
)

MONOGRAM_FONT = "DejaVuSerif-Bold.ttf"
# Proportions of each packaging: front face width : height, and depth for boxes (all relative to width).
BOX_SHAPE = {"box": (1.0, 1.45, 0.42), "shoe_box": (1.0, 0.36, 0.6)}
BOTTLE_WIDTH = 0.40  # body width / total height
BAG_WIDTH = 0.78
TAG_WIDTH = 0.58
BAG_CRIMP = 0.08  # sealed top strip, fraction of the bag's height
TAG_STRING = 0.14  # string above a hang tag, fraction of the object's height
LABEL_SPAN = math.radians(62)  # a bottle label covers +-62 degrees of the cylinder
LABEL_TOP, LABEL_BOTTOM = 0.38, 0.9  # fractions of the bottle's height


def front_aspect(packaging: str) -> float:
    """Height / width of the printed front face of each packaging."""
    if packaging in BOX_SHAPE:
        return BOX_SHAPE[packaging][1] / BOX_SHAPE[packaging][0]
    if packaging == "bottle":
        return (LABEL_BOTTOM - LABEL_TOP) / (2 * LABEL_SPAN / math.pi * BOTTLE_WIDTH * 1.1)
    if packaging == "bag":
        return (1 - BAG_CRIMP) / BAG_WIDTH
    if packaging == "label":
        return 1 / TAG_WIDTH
    raise ValueError(f"unknown packaging {packaging!r}")


@lru_cache(maxsize=512)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), max(6, int(size)))


def _fit_font(name: str, text: str, height: float, width: float) -> ImageFont.FreeTypeFont:
    """The largest font whose cap height is about `height` px and whose advance fits `width` px."""
    size = max(6, int(height * 1.35))
    length = font(name, size).getlength(text)
    if length > width:
        size = max(6, int(size * width / length))
    return font(name, size)


def _contrast(canvas: Image.Image, box: tuple[float, float, float, float], colours: tuple[str, str]) -> str:
    """Whichever of `colours` stands out most against what is already printed under `box`."""
    w, h = canvas.size
    x0, y0, x1, y1 = (int(np.clip(v, 0, lim)) for v, lim in zip(box, (w, h, w, h), strict=True))
    region = np.asarray(
        canvas.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))).convert("RGB"), dtype=np.float32
    )
    mean = region.reshape(-1, 3).mean(axis=0)
    return max(colours, key=lambda c: float(np.abs(np.array(rgb_of(c)) - mean).sum()))


# ---------------------------------------------------------------------------------------------- logo


def render_emblem(emblem: Emblem, size: int) -> Image.Image:
    """RGBA emblem, `size` px tall (wider when stretched), drawn at 2x and reduced for smooth edges."""
    s = max(16, int(size)) * 2
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    c, r = s / 2, s * 0.44
    fill, outline, mark = rgb_of(emblem.fill), rgb_of(emblem.outline), rgb_of(emblem.mark_colour)
    line = max(2, int(r * 0.06))
    n = emblem.points

    def ring(radius: float, count: int, phase: float = 0.0) -> list[tuple[float, float]]:
        return [
            (
                c + radius * math.sin(phase + 2 * math.pi * k / count),
                c - radius * math.cos(phase + 2 * math.pi * k / count),
            )
            for k in range(count)
        ]

    if emblem.shape == "star":
        pts = [
            (
                c + (r if k % 2 == 0 else r * emblem.inner) * math.sin(math.pi * k / n),
                c - (r if k % 2 == 0 else r * emblem.inner) * math.cos(math.pi * k / n),
            )
            for k in range(2 * n)
        ]
        draw.polygon(pts, fill=fill, outline=outline, width=line)
    elif emblem.shape == "polygon":
        draw.polygon(ring(r, n), fill=fill, outline=outline, width=line)
        draw.polygon(ring(r * (emblem.inner + 0.2), n, math.pi / n), outline=outline, width=line)
    elif emblem.shape == "shield":
        pts = [(c - 0.8 * r, c - 0.85 * r), (c + 0.8 * r, c - 0.85 * r), (c + 0.8 * r, c + 0.05 * r)]
        pts += [
            (c + 0.8 * r * math.cos(t), c + 0.05 * r + r * 0.95 * math.sin(t))
            for t in np.linspace(0, math.pi / 2, 12)
        ]
        pts += [
            (c - 0.8 * r * math.sin(t), c + r - r * 0.95 * (1 - math.cos(t)))
            for t in np.linspace(0, math.pi / 2, 12)
        ]
        mask = Image.new("L", (s, s), 0)
        ImageDraw.Draw(mask).polygon(pts, fill=255)
        stripes = Image.new("RGBA", (s, s), (*fill, 255))
        stripe_draw = ImageDraw.Draw(stripes)
        width = 1.6 * r / n
        for k in range(0, n, 2):
            x0 = c - 0.8 * r + k * width
            stripe_draw.rectangle([x0, 0, x0 + width, s], fill=(*mark, 255))
        image.paste(stripes, (0, 0), mask)
        draw.polygon(pts, outline=outline, width=line)
    elif emblem.shape == "petals":
        for k in range(n):
            angle = 2 * math.pi * k / n
            cx, cy = c + 0.5 * r * math.sin(angle), c - 0.5 * r * math.cos(angle)
            petal = [
                (
                    cx
                    + 0.5 * r * math.cos(t) * math.sin(angle)
                    + 0.28 * r * emblem.inner * 2 * math.sin(t) * math.cos(angle),
                    cy
                    - 0.5 * r * math.cos(t) * math.cos(angle)
                    + 0.28 * r * emblem.inner * 2 * math.sin(t) * math.sin(angle),
                )
                for t in np.linspace(0, 2 * math.pi, 28, endpoint=False)
            ]
            draw.polygon(petal, fill=fill, outline=outline, width=max(1, line // 2))
        draw.ellipse([c - 0.3 * r, c - 0.3 * r, c + 0.3 * r, c + 0.3 * r], fill=outline)
    elif emblem.shape == "rings":
        for k in range(n):
            radius = r * (1 - k / (n + 0.5))
            colour = fill if k % 2 == 0 else outline
            draw.ellipse([c - radius, c - radius, c + radius, c + radius], fill=colour)
    elif emblem.shape == "gear":
        pts = []
        for k in range(n):
            base = 2 * math.pi * k / n
            for offset, radius in ((-0.32, 0.78), (-0.18, 1.0), (0.18, 1.0), (0.32, 0.78)):
                t = base + offset * 2 * math.pi / n
                pts.append((c + r * radius * math.sin(t), c - r * radius * math.cos(t)))
        draw.polygon(pts, fill=fill, outline=outline, width=line)
        hole = r * emblem.inner * 0.8
        draw.ellipse([c - hole, c - hole, c + hole, c + hole], fill=(0, 0, 0, 0), outline=outline, width=line)
    else:
        raise ValueError(f"unknown emblem shape {emblem.shape!r}")

    angle = math.radians(emblem.mark_angle)
    if emblem.mark == "dot":
        mx, my, mr = c + 0.72 * r * math.sin(angle), c - 0.72 * r * math.cos(angle), 0.17 * r
        draw.ellipse(
            [mx - mr, my - mr, mx + mr, my + mr], fill=mark, outline=outline, width=max(1, line // 2)
        )
    elif emblem.mark == "slash":
        dx, dy = 0.95 * r * math.sin(angle), -0.95 * r * math.cos(angle)
        draw.line([(c - dx, c - dy), (c + dx, c + dy)], fill=mark, width=int(0.13 * r))
    elif emblem.mark == "crescent":
        start = math.degrees(angle) - 90 - 45  # PIL: degrees clockwise from 3 o'clock
        draw.arc(
            [c - r * 1.02, c - r * 1.02, c + r * 1.02, c + r * 1.02],
            start,
            start + 90,
            fill=mark,
            width=int(0.16 * r),
        )
    else:
        raise ValueError(f"unknown emblem mark {emblem.mark!r}")

    letter_font = font(MONOGRAM_FONT, int(r * 0.8))
    draw.text(
        (c, c),
        emblem.monogram,
        font=letter_font,
        fill=outline if emblem.shape != "rings" else mark,
        anchor="mm",
        stroke_width=max(1, line // 2),
        stroke_fill=(255, 255, 255),
    )
    if emblem.mirrored:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out_w = max(8, round(size * emblem.stretch))
    return image.resize((out_w, max(8, int(size))), Image.Resampling.LANCZOS)


def render_logo(design: Design, height: int) -> Image.Image:
    """Emblem and wordmark as the brand composes them (stacked or inline), RGBA, `height` px tall."""
    word_h = height * (0.3 if design.logo_stacked else 0.45)
    word_font = font(design.font, max(8, int(word_h * 1.35)))
    left, top, right, bottom = word_font.getbbox(design.wordmark)
    word = Image.new("RGBA", (right - left + 4, bottom - top + 4), (0, 0, 0, 0))
    ImageDraw.Draw(word).text(
        (2 - left, 2 - top), design.wordmark, font=word_font, fill=rgb_of(design.wordmark_colour)
    )
    if design.logo_stacked:
        emblem = render_emblem(design.emblem, int(height * 0.62))
        gap = int(height * 0.06)
        width = max(emblem.width, word.width)
        logo = Image.new("RGBA", (width, emblem.height + gap + word.height), (0, 0, 0, 0))
        logo.alpha_composite(emblem, ((width - emblem.width) // 2, 0))
        logo.alpha_composite(word, ((width - word.width) // 2, emblem.height + gap))
    else:
        emblem = render_emblem(design.emblem, int(height * 0.95))
        gap = int(height * 0.12)
        logo = Image.new(
            "RGBA", (emblem.width + gap + word.width, max(emblem.height, word.height)), (0, 0, 0, 0)
        )
        logo.alpha_composite(emblem, (0, (logo.height - emblem.height) // 2))
        logo.alpha_composite(word, (emblem.width + gap, (logo.height - word.height) // 2))
    return logo


@lru_cache(maxsize=256)
def _logo_size(design: Design) -> tuple[int, int]:
    """The logo's size at 200 px tall, to scale it into a box in one go."""
    return render_logo(design, 200).size


def _paste_logo(
    canvas: Image.Image, design: Design, box: tuple[float, float, float, float]
) -> tuple[int, int, int, int]:
    """Scale the logo into `box` (x0, y0, x1, y1), centred; returns where it landed."""
    x0, y0, x1, y1 = box
    probe_w, probe_h = _logo_size(design)
    scale = min((x1 - x0) / probe_w, (y1 - y0) / probe_h)
    logo = render_logo(design, max(16, int(200 * scale)))
    if logo.width > x1 - x0 or logo.height > y1 - y0:
        fit = min((x1 - x0) / logo.width, (y1 - y0) / logo.height)
        logo = logo.resize(
            (max(1, int(logo.width * fit)), max(1, int(logo.height * fit))), Image.Resampling.LANCZOS
        )
    left = int((x0 + x1 - logo.width) / 2)
    top = int((y0 + y1 - logo.height) / 2)
    canvas.alpha_composite(logo, (left, top))
    return left, top, left + logo.width, top + logo.height


# ---------------------------------------------------------------------------------------------- faces


def _decorate(draw: ImageDraw.ImageDraw, design: Design, w: int, h: int) -> None:
    """The brand's colour layout (trade dress) in primary, secondary and accent."""
    p = design.palette
    primary, secondary, accent = rgb_of(p.primary), rgb_of(p.secondary), rgb_of(p.accent)
    thin = max(2, int(0.01 * h))
    if design.layout == "band":
        draw.rectangle([0, 0.62 * h, w, 0.8 * h], fill=primary)
        draw.rectangle([0, 0.6 * h - thin, w, 0.6 * h], fill=accent)
        draw.rectangle([0, 0.8 * h, w, 0.84 * h], fill=secondary)
    elif design.layout == "diagonal":
        draw.polygon([(0, 0.78 * h), (w, 0.52 * h), (w, 0.74 * h), (0, h)], fill=primary)
        draw.polygon([(0, 0.72 * h), (w, 0.46 * h), (w, 0.5 * h), (0, 0.76 * h)], fill=secondary)
    elif design.layout == "split":
        xs = np.linspace(0, w, 40)
        wave = [(float(x), float(0.62 * h + 0.03 * h * math.sin(2 * math.pi * x / w))) for x in xs]
        draw.polygon([*wave, (w, h), (0, h)], fill=primary)
        draw.line(wave, fill=secondary, width=3 * thin)
    elif design.layout == "frame":
        border = int(0.05 * min(w, h))
        draw.rectangle([0, 0, w, h], outline=primary, width=border)
        draw.rectangle(
            [border * 1.6, border * 1.6, w - border * 1.6, h - border * 1.6], outline=accent, width=thin
        )
        draw.rectangle([border, 0.64 * h, w - border, 0.78 * h], fill=secondary)
    elif design.layout == "chevron":
        draw.polygon(
            [(0, 0.58 * h), (w / 2, 0.78 * h), (w, 0.58 * h), (w, 0.86 * h), (w / 2, h), (0, 0.86 * h)],
            fill=primary,
        )
        draw.polygon(
            [
                (0, 0.52 * h),
                (w / 2, 0.72 * h),
                (w, 0.52 * h),
                (w, 0.56 * h),
                (w / 2, 0.76 * h),
                (0, 0.56 * h),
            ],
            fill=secondary,
        )
    elif design.layout == "arc":
        radius = 0.75 * max(w, h)
        draw.ellipse(
            [0.55 * w - radius, 1.12 * h - radius * 0.62, 0.55 * w + radius, 1.12 * h + radius], fill=primary
        )
        draw.arc(
            [0.55 * w - radius, 1.12 * h - radius * 0.62, 0.55 * w + radius, 1.12 * h + radius],
            180,
            360,
            fill=secondary,
            width=4 * thin,
        )
    else:
        raise ValueError(f"unknown layout {design.layout!r}")


def _text(
    canvas: Image.Image,
    text: str,
    name: str,
    centre: tuple[float, float],
    height: float,
    width: float,
    design: Design,
    anchor: str = "mm",
) -> None:
    typeface = _fit_font(name, text, height, width)
    x, y = centre
    half_w, half_h = typeface.getlength(text) / 2, height * 0.7
    box = (
        (x - half_w, y - half_h, x + half_w, y + half_h)
        if anchor == "mm"
        else (x, y - half_h, x + 2 * half_w, y + half_h)
    )
    colour = _contrast(canvas, box, (design.palette.ink, design.palette.paper))
    ImageDraw.Draw(canvas).text((x, y), text, font=typeface, fill=rgb_of(colour), anchor=anchor)


def _barcode(canvas: Image.Image, design: Design, box: tuple[float, float, float, float]) -> None:
    x0, y0, x1, y1 = box
    draw = ImageDraw.Draw(canvas)
    draw.rectangle(box, fill=(250, 250, 250))
    bits = [(design.barcode >> k) & 1 for k in range(24)]
    pad = (x1 - x0) * 0.08
    pitch = (x1 - x0 - 2 * pad) / len(bits)
    for k, bit in enumerate(bits):
        left = x0 + pad + k * pitch
        bar = [left, y0 + (y1 - y0) * 0.12, left + pitch * (0.3 + 0.35 * bit), y1 - (y1 - y0) * 0.12]
        draw.rectangle(bar, fill=(20, 20, 20))


def render_front(design: Design, width: int, height: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The printed front face (RGB uint8) and the box its logo occupies, before any print defect."""
    w, h = max(32, int(width)), max(32, int(height))
    canvas = Image.new("RGBA", (w, h), (*rgb_of(design.palette.paper), 255))
    _decorate(ImageDraw.Draw(canvas), design, w, h)
    name, size, tagline, *small = design.lines
    if w > 1.3 * h:  # landscape face (shoe box side): logo left, text right
        logo_box = _paste_logo(canvas, design, (0.05 * w, 0.1 * h, 0.45 * w, 0.62 * h))
        _text(canvas, name, TEXT_BOLD_FONT, (0.72 * w, 0.22 * h), 0.11 * h, 0.48 * w, design)
        _text(canvas, tagline, TEXT_ITALIC_FONT, (0.72 * w, 0.38 * h), 0.07 * h, 0.45 * w, design)
        _text(canvas, size, TEXT_BOLD_FONT, (0.72 * w, 0.7 * h), 0.1 * h, 0.3 * w, design)
        for k, line in enumerate(small):
            _text(
                canvas,
                line,
                TEXT_FONT,
                (0.05 * w, (0.8 + 0.09 * k) * h),
                0.045 * h,
                0.4 * w,
                design,
                anchor="lm",
            )
        _barcode(canvas, design, (0.84 * w, 0.78 * h, 0.97 * w, 0.95 * h))
    else:
        logo_area = (
            (0.1 * w, 0.05 * h, 0.9 * w, 0.34 * h)
            if design.logo_stacked
            else (0.06 * w, 0.1 * h, 0.94 * w, 0.28 * h)
        )
        logo_box = _paste_logo(canvas, design, logo_area)
        _text(canvas, name, TEXT_BOLD_FONT, (0.5 * w, 0.42 * h), 0.045 * h, 0.86 * w, design)
        _text(canvas, tagline, TEXT_ITALIC_FONT, (0.5 * w, 0.5 * h), 0.028 * h, 0.8 * w, design)
        _text(canvas, size, TEXT_BOLD_FONT, (0.5 * w, 0.71 * h), 0.04 * h, 0.5 * w, design)
        for k, line in enumerate(small):
            _text(
                canvas,
                line,
                TEXT_FONT,
                (0.07 * w, (0.885 + 0.04 * k) * h),
                0.016 * h,
                0.55 * w,
                design,
                anchor="lm",
            )
        _barcode(canvas, design, (0.68 * w, 0.87 * h, 0.94 * w, 0.96 * h))
    return np.asarray(canvas.convert("RGB")), logo_box


def render_side(design: Design, width: int, height: int) -> np.ndarray:
    """A box's narrow side: paper, a primary foot band, the wordmark running up the side, the emblem."""
    w, h = max(16, int(width)), max(16, int(height))
    canvas = Image.new("RGBA", (w, h), (*rgb_of(design.palette.paper), 255))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0.82 * h, w, h], fill=rgb_of(design.palette.primary))
    draw.rectangle([0, 0.78 * h, w, 0.8 * h], fill=rgb_of(design.palette.secondary))
    if h > w:
        word = Image.new("RGBA", (int(0.62 * h), int(0.8 * w)), (0, 0, 0, 0))
        typeface = _fit_font(design.font, design.wordmark, 0.42 * w, 0.6 * h)
        ImageDraw.Draw(word).text(
            (word.width / 2, word.height / 2),
            design.wordmark,
            font=typeface,
            fill=rgb_of(design.wordmark_colour),
            anchor="mm",
        )
        word = word.rotate(90, expand=True)
        canvas.alpha_composite(word, ((w - word.width) // 2, int(0.14 * h)))
    else:
        _paste_logo(canvas, design, (0.1 * w, 0.1 * h, 0.9 * w, 0.7 * h))
    return np.asarray(canvas.convert("RGB"))


def render_top(design: Design, width: int, height: int) -> np.ndarray:
    """A box's top (a shoe box's lid): paper with the logo, framed by the primary colour."""
    w, h = max(16, int(width)), max(16, int(height))
    canvas = Image.new("RGBA", (w, h), (*rgb_of(design.palette.paper), 255))
    draw = ImageDraw.Draw(canvas)
    edge = max(2, int(0.06 * min(w, h)))
    draw.rectangle([0, 0, w, h], outline=rgb_of(design.palette.primary), width=edge)
    draw.rectangle(
        [edge, edge, w - edge, h - edge], outline=rgb_of(design.palette.secondary), width=max(1, edge // 3)
    )
    if design.packaging == "shoe_box":
        _paste_logo(canvas, design, (0.15 * w, 0.15 * h, 0.85 * w, 0.85 * h))
    else:
        side = 0.6 * min(w, h)
        emblem = render_emblem(design.emblem, int(side))
        canvas.alpha_composite(emblem, ((w - emblem.width) // 2, (h - emblem.height) // 2))
    return np.asarray(canvas.convert("RGB"))


# ---------------------------------------------------------------------------------------------- print defects


def apply_print_defect(face: np.ndarray, design: Design, rng: np.random.Generator) -> np.ndarray:
    """A low-quality print of `face`: soft, screened, banded or misregistered, as cheap reprints look."""
    if not design.print_defect:
        return face
    strength = design.print_strength
    h, w = face.shape[:2]
    image = face.astype(np.float32)
    if design.print_defect == "blur":
        sigma = max(1.0, strength * 0.006 * max(h, w))
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    elif design.print_defect == "halftone":
        period = float(rng.uniform(3.0, 4.5))
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        screened = np.empty_like(image)
        for channel, angle in enumerate((15.0, 75.0, 45.0)):
            t = math.radians(angle)
            u = (xs * math.cos(t) + ys * math.sin(t)) * (2 * math.pi / period)
            v = (-xs * math.sin(t) + ys * math.cos(t)) * (2 * math.pi / period)
            screen = (np.cos(u) + np.cos(v)) * 0.25 + 0.5  # 0..1 dot pattern
            ink = 1.0 - image[..., channel] / 255.0
            screened[..., channel] = np.where(screen < ink, 0.0, 255.0)
        screened = cv2.GaussianBlur(screened, (0, 0), 0.6)
        image = image * (1 - strength) + screened * strength
    elif design.print_defect == "banding":
        levels = int(rng.integers(5, 9))
        image = np.round(image / 255 * (levels - 1)) / (levels - 1) * 255
        period = float(rng.uniform(10, 24))
        rows = np.arange(h, dtype=np.float32)[:, None, None]
        streaks = 1 + 0.12 * strength * np.sin(2 * math.pi * rows / period)
        streaks = streaks * (1 + 0.05 * strength * rng.standard_normal((h, 1, 1)).astype(np.float32))
        image = image * streaks
    elif design.print_defect == "misregistration":
        shift = max(2, round(strength * 0.012 * max(h, w)))
        dx, dy = int(rng.integers(-shift, shift + 1)) or shift, int(rng.integers(-shift, shift + 1))
        channel = int(rng.integers(3))
        image[..., channel] = np.roll(image[..., channel], (dy, dx), axis=(0, 1))
        image = cv2.GaussianBlur(image, (0, 0), 0.8)
    else:
        raise ValueError(f"unknown print defect {design.print_defect!r}")
    return np.clip(image, 0, 255).astype(np.uint8)
