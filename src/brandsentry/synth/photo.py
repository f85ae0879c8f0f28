"""Photographs: a packaging object placed in a scene and shot with an imperfect camera, then JPEG-encoded.

References are studio shots (seamless backdrop, soft even light, no clutter). Listings are taken the way
sellers take them: cluttered tables and floors, hands and objects in the way, warm or cold light, shadows,
glare, blur, sensor noise and heavy JPEG compression. Listing conditions never appear in references.
"""

from __future__ import annotations

import colorsys
import io
import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from PIL import Image, ImageDraw

from brandsentry.synth.brands import TEXT_BOLD_FONT, TEXT_FONT
from brandsentry.synth.render import font

ASPECTS = (4 / 3, 3 / 4, 1.0, 3 / 2, 2 / 3, 16 / 9)
GRAIN_TILE = 256  # px at half resolution: a repeat every 512 px of the photo is invisible under the content
BACKGROUNDS = ("wood", "fabric", "marble", "tiles", "concrete", "cardboard", "bedsheet")


@dataclass(frozen=True)
class Shot:
    """How one photo is taken: frame, object pose and placement, light, and the camera's imperfections."""

    width: int
    height: int
    object_size: int  # px, longest side of the object
    yaw: float
    pitch: float
    rotation: float  # in-plane, degrees
    perspective: float  # corner jitter, fraction of the object size
    centre: tuple[float, float]  # fraction of the frame
    light: tuple[float, float, float]
    background: str  # "studio" or one of BACKGROUNDS
    clutter: int
    occlusion: str  # "", "hand", "object", "sticker"
    exposure: float
    light_gradient: float
    kelvin: float
    glare: float
    shadow: float
    blur: float
    motion: float
    noise: float
    quality: int


def _frame(rng: np.random.Generator, long_side: tuple[int, int]) -> tuple[int, int]:
    side = round(
        math.exp(rng.uniform(math.log(long_side[0]), math.log(long_side[1])))
    )  # small photos are common
    aspect = float(rng.choice(ASPECTS))
    if aspect >= 1:
        return side, max(64, round(side / aspect))
    return max(64, round(side * aspect)), side


def reference_shot(rng: np.random.Generator, index: int, long_side: tuple[int, int]) -> Shot:
    """A brand's catalogue photo: front, three-quarter left/right or from above, in even studio light."""
    width, height = _frame(
        rng, (max(long_side[0], round(long_side[1] * 0.7)), long_side[1])
    )  # catalogue quality
    poses = ((0.0, 8.0), (-30.0, 12.0), (30.0, 12.0), (0.0, 32.0), (-15.0, 22.0), (15.0, 22.0))
    yaw, pitch = poses[index % len(poses)]
    return Shot(
        width=width,
        height=height,
        object_size=int(min(width, height) * rng.uniform(0.55, 0.85)),
        yaw=yaw + float(rng.uniform(-8, 8)),
        pitch=pitch + float(rng.uniform(-5, 5)),
        rotation=float(rng.uniform(-4, 4)),
        perspective=0.0,
        centre=(0.5 + float(rng.uniform(-0.08, 0.08)), 0.5 + float(rng.uniform(-0.06, 0.06))),
        light=(float(rng.uniform(-0.7, 0.7)), float(rng.uniform(0.4, 0.9)), 0.8),
        background="studio",
        clutter=0,
        occlusion="",
        exposure=float(rng.uniform(0.98, 1.04)),
        light_gradient=0.05,
        kelvin=float(rng.uniform(5200, 6000)),
        glare=0.0,
        shadow=0.25,
        blur=0.0,
        motion=0.0,
        noise=float(rng.uniform(0.5, 1.5)),
        quality=92,
    )


def listing_shot(rng: np.random.Generator, long_side: tuple[int, int]) -> Shot:
    """A seller's photo: any angle, any room, any light, often partly hidden and badly focused."""
    width, height = _frame(rng, long_side)
    lx, ly = rng.uniform(-1, 1), rng.uniform(-0.2, 1)
    occlusion = str(rng.choice(["", "hand", "object", "sticker"], p=[0.6, 0.18, 0.12, 0.1]))
    return Shot(
        width=width,
        height=height,
        object_size=int(min(width, height) * rng.uniform(0.5, 0.85)),
        yaw=float(rng.uniform(-40, 40)),
        pitch=float(rng.uniform(0, 40)),
        rotation=float(rng.normal(0, 9)),
        perspective=float(rng.uniform(0, 0.08)),
        centre=(0.5 + float(rng.uniform(-0.1, 0.1)), 0.5 + float(rng.uniform(-0.1, 0.1))),
        light=(float(lx), float(ly), 0.7),
        background=str(rng.choice(BACKGROUNDS)),
        clutter=int(rng.integers(0, 5)),
        occlusion=occlusion,
        exposure=float(rng.uniform(0.7, 1.2)),
        light_gradient=float(rng.uniform(0.1, 0.45)),
        kelvin=float(rng.uniform(2700, 7500)),
        glare=float(rng.uniform(0.3, 0.9)) if rng.random() < 0.25 else 0.0,
        shadow=float(rng.uniform(0.3, 0.65)),
        blur=float(rng.uniform(0.6, 2.2)) if rng.random() < 0.35 else 0.0,
        motion=float(rng.uniform(4, 12)) if rng.random() < 0.12 else 0.0,
        noise=float(rng.uniform(1.5, 7)),
        quality=int(rng.integers(55, 93)),
    )


# ---------------------------------------------------------------------------------------------- backgrounds


def fractal_noise(
    rng: np.random.Generator, width: int, height: int, base: int = 4, octaves: int = 5
) -> np.ndarray:
    """Value noise in [0, 1]: random grids upscaled with cubic interpolation and summed by octave."""
    total = np.zeros((height, width), dtype=np.float32)
    weight = 1.0
    for octave in range(octaves):
        cells = base * 2**octave
        rows = max(2, round(cells * height / max(width, height)))
        grid = rng.random((rows + 1, cells + 1), dtype=np.float32) * weight
        total += cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        weight *= 0.5
    low, high = float(total.min()), float(total.max())
    return (total - low) / (high - low + 1e-6)


def _hsv(
    rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]
) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.uniform(*h) % 1.0, rng.uniform(*s), rng.uniform(*v))
    return np.array(rgb, dtype=np.float32) * 255


def background(kind: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A float32 RGB surface (0..255) of `kind`."""
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    scale = max(width, height)
    if kind == "studio":
        # seamless paper: mostly white to mid grey or a pale tint, sometimes a dark backdrop
        value = (0.2, 0.35) if rng.random() < 0.15 else (0.6, 0.97)
        tone = _hsv(rng, (0, 1), (0.0, 0.15), value)
        fall = rng.uniform(0.05, 0.25)
        gradient = (
            1.0 - fall * (ys / height) ** 1.5 - 0.08 * ((xs - width * rng.uniform(0.3, 0.7)) / width) ** 2
        )
        return tone * gradient[..., None]
    if kind == "wood":  # planks: grain streaks along them, gently wavy growth rings, dark seams
        along, across = (height, width) if rng.random() < 0.5 else (width, height)
        streaks = cv2.resize(
            rng.random((max(8, across // 5), 6), dtype=np.float32),
            (along, across),
            interpolation=cv2.INTER_CUBIC,
        )
        warp = fractal_noise(rng, along, across, base=2, octaves=3)
        rows = np.arange(across, dtype=np.float32)[:, None] / across
        rings = 0.5 + 0.5 * np.sin((rows * rng.uniform(6, 14) + warp * 1.5) * 2 * math.pi)
        plank = max(8.0, across * rng.uniform(0.18, 0.35))
        seams = (np.arange(across, dtype=np.float32)[:, None] % plank) < max(1.0, across * 0.004)
        light = _hsv(rng, (0.05, 0.1), (0.35, 0.6), (0.55, 0.8))
        dark = _hsv(rng, (0.04, 0.09), (0.5, 0.75), (0.25, 0.45))
        mix = np.clip(0.45 * rings + 0.45 * streaks + 0.1 * warp, 0, 1) * np.where(seams, 0.3, 1.0)
        surface = dark + (light - dark) * mix[..., None]
        return (
            surface
            if surface.shape[:2] == (height, width)
            else np.ascontiguousarray(surface.transpose(1, 0, 2))
        )
    if kind == "fabric":
        period = rng.uniform(2, 4)
        weave = 0.5 + 0.25 * (np.sin(xs * 2 * math.pi / period) + np.sin(ys * 2 * math.pi / period))
        folds = fractal_noise(rng, width, height, base=2, octaves=3)
        colour = _hsv(rng, (0, 1), (0.2, 0.7), (0.35, 0.85))
        return colour * (0.75 + 0.18 * weave + 0.35 * (folds - 0.5))[..., None]
    if kind == "marble":
        noise = fractal_noise(rng, width, height, base=3, octaves=6)
        veins = np.abs(np.sin((xs / scale * 4 + noise * 9) * math.pi)) ** 0.3
        return _hsv(rng, (0, 1), (0.0, 0.08), (0.82, 0.96)) * (0.72 + 0.28 * veins)[..., None]
    if kind == "tiles":
        size = scale * rng.uniform(0.12, 0.3)
        grout = ((xs % size) < size * 0.04) | ((ys % size) < size * 0.04)
        colour = _hsv(rng, (0, 1), (0.05, 0.45), (0.55, 0.9))
        shade = 0.9 + 0.15 * fractal_noise(rng, width, height, base=6, octaves=2)
        return colour * np.where(grout, 0.55, shade)[..., None]
    if kind == "concrete":
        noise = fractal_noise(rng, width, height, base=8, octaves=6)
        return _hsv(rng, (0, 1), (0.0, 0.08), (0.45, 0.7)) * (0.8 + 0.4 * noise)[..., None]
    if kind == "cardboard":
        noise = fractal_noise(rng, width, height, base=6, octaves=5)
        flutes = 0.5 + 0.5 * np.sin(ys * 2 * math.pi / rng.uniform(3, 6))
        tone = _hsv(rng, (0.07, 0.1), (0.35, 0.55), (0.6, 0.78))
        return tone * (0.85 + 0.12 * noise + 0.05 * flutes)[..., None]
    if kind == "bedsheet":
        folds = fractal_noise(rng, width, height, base=2, octaves=3)
        return _hsv(rng, (0, 1), (0.03, 0.25), (0.8, 0.97)) * (0.8 + 0.3 * folds)[..., None]
    raise ValueError(f"unknown background {kind!r}")


def _clutter(image: np.ndarray, count: int, rng: np.random.Generator) -> None:
    """Everyday objects around the product (phones, mugs, cables, receipts), drawn in place with their shadow."""
    height, width = image.shape[:2]
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(count):
        kind = str(rng.choice(["block", "disc", "cable", "receipt"]))
        colour = (*(int(c) for c in _hsv(rng, (0, 1), (0.0, 0.8), (0.1, 0.95))), 255)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = max(width, height) * rng.uniform(0.08, 0.3)
        if kind == "block":
            box = [cx - size / 2, cy - size / 3, cx + size / 2, cy + size / 3]
            draw.rounded_rectangle(box, radius=int(size * 0.08), fill=colour)
        elif kind == "disc":
            draw.ellipse([cx - size / 3, cy - size / 3, cx + size / 3, cy + size / 3], fill=colour)
        elif kind == "cable":
            stretch = rng.uniform(0.5, 2)
            pts = [
                (cx + size * math.cos(t) * stretch, cy + size * math.sin(2 * t))
                for t in np.linspace(0, math.pi, 12)
            ]
            draw.line(pts, fill=colour, width=max(2, int(size * 0.04)))
        else:  # a receipt with lines of grey "text"
            x0, y0, x1, y1 = cx - size / 4, cy - size / 2, cx + size / 4, cy + size / 2
            draw.rectangle([x0, y0, x1, y1], fill=(240, 238, 230, 255))
            line_h = (y1 - y0) / 14
            for k in range(2, 13):
                top = y0 + k * line_h
                draw.rectangle(
                    [x0 + size * 0.04, top, x0 + (x1 - x0) * rng.uniform(0.4, 0.9), top + line_h * 0.35],
                    fill=(130, 130, 125, 255),
                )
    if count:
        rgba = np.asarray(layer, dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        offset = max(1, int(0.01 * max(width, height)))
        shadow = cv2.GaussianBlur(np.roll(alpha[..., 0], (offset, offset), axis=(0, 1)), (0, 0), offset * 1.5)
        image *= 1 - 0.35 * shadow[..., None]
        image *= 1 - alpha
        image += rgba[..., :3] * alpha


# ---------------------------------------------------------------------------------------------- the shot


def _kelvin_gains(kelvin: float) -> np.ndarray:
    """White-balance error of a light at `kelvin` (Tanner Helland's blackbody fit), green normalised to 1."""
    t = kelvin / 100
    red = 255.0 if t <= 66 else 329.7 * (t - 60) ** -0.1332
    green = 99.47 * math.log(t) - 161.12 if t <= 66 else 288.12 * (t - 60) ** -0.0755
    blue = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.52 * math.log(t - 10) - 305.04)
    gains = np.clip(np.array([red, green, blue], dtype=np.float32), 1, 255)
    # cameras correct most of it: keep a third of the cast
    return 1 + (gains / gains.mean() - 1) * 0.35


def _placement(obj: np.ndarray, shot: Shot, rng: np.random.Generator) -> np.ndarray:
    """Homography from the object's pixels to the frame: rotation, perspective jitter, position."""
    h, w = obj.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    centred = src - np.float32([w / 2, h / 2])
    angle = math.radians(shot.rotation)
    rot = np.float32([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    jitter = rng.uniform(-1, 1, (4, 2)).astype(np.float32) * shot.perspective * max(w, h)
    dst = centred @ rot.T + jitter + np.float32([shot.centre[0] * shot.width, shot.centre[1] * shot.height])
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32))


def _occluder(shot: Shot, box: tuple[float, float, float, float], rng: np.random.Generator) -> Image.Image:
    """A hand holding the product, an object in front of it, or a price sticker, as an RGBA layer."""
    layer = Image.new("RGBA", (shot.width, shot.height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    if shot.occlusion == "hand":
        skin = (*(int(c) for c in _hsv(rng, (0.03, 0.09), (0.25, 0.6), (0.45, 0.95))), 255)
        side = rng.choice([-1, 1])
        px = x0 if side < 0 else x1
        py = y0 + bh * rng.uniform(0.35, 0.8)
        palm = 0.22 * min(bw, bh) + 0.05 * max(bw, bh)
        centre = px + side * palm * 0.9
        draw.ellipse([centre - palm * 1.2, py - palm, centre + palm * 1.2, py + palm], fill=skin)
        for k in range(4):  # fingers over the product's edge
            fy = py - palm * 0.9 + k * palm * 0.55
            reach = sorted((px - side * palm * 0.6, px + side * palm * 0.5))
            draw.rounded_rectangle(
                [reach[0], fy, reach[1], fy + palm * 0.42], radius=int(palm * 0.2), fill=skin
            )
        arm_start = (px + side * palm * 2.0, py + palm * 0.2)
        draw.line([arm_start, (px + side * shot.width, py + palm * 0.5)], fill=skin, width=int(palm * 1.4))
    elif shot.occlusion == "object":
        colour = (*(int(c) for c in _hsv(rng, (0, 1), (0.1, 0.9), (0.15, 0.9))), 255)
        cx, cy = x0 + bw * rng.uniform(-0.1, 1.1), y1 - bh * rng.uniform(0.0, 0.3)
        size = max(bw, bh) * rng.uniform(0.25, 0.45)
        box = [cx - size / 2, cy - size * 0.6, cx + size / 2, cy + size * 0.6]
        draw.rounded_rectangle(box, radius=int(size * 0.15), fill=colour)
    elif shot.occlusion == "sticker":
        paper = (*(int(c) for c in _hsv(rng, (0, 0.17), (0.0, 0.7), (0.92, 1.0))), 255)
        cx, cy = x0 + bw * rng.uniform(0.15, 0.85), y0 + bh * rng.uniform(0.3, 0.9)
        size = min(bw, bh) * rng.uniform(0.18, 0.3)
        box = [cx - size, cy - size * 0.45, cx + size, cy + size * 0.45]
        draw.rounded_rectangle(box, radius=int(size * 0.15), fill=paper)
        price = f"{rng.integers(3, 99)}.{rng.choice(['99', '50', '00'])}"
        draw.text(
            (cx, cy), price, font=font(TEXT_BOLD_FONT, int(size * 0.5)), fill=(20, 20, 20, 255), anchor="mm"
        )
    else:
        raise ValueError(f"unknown occlusion {shot.occlusion!r}")
    return layer


def _over(image: np.ndarray, rgba: np.ndarray, origin: tuple[int, int] = (0, 0)) -> None:
    """Composite `rgba` (uint8) over `image` (uint8 RGB) in place, its top-left corner at `origin` (x, y)."""
    x, y = origin
    h, w = rgba.shape[:2]
    region = image[y : y + h, x : x + w]
    alpha = rgba[..., 3].astype(np.float32) * (1 / 255)
    region[:] = cv2.blendLinear(np.ascontiguousarray(rgba[..., :3]), region, alpha, 1 - alpha)


def _shadow(alpha: np.ndarray, offset: tuple[int, int], sigma: float, strength: float) -> np.ndarray:
    """Multiplicative shade (float32, 1 = unshaded) cast by a soft copy of `alpha` (0..1) moved by `offset` (dy, dx)."""
    moved = np.roll(alpha, offset, axis=(0, 1))
    return 1 - strength * cv2.GaussianBlur(moved, (0, 0), max(sigma, 0.5))


def _bounds(points: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0 = np.floor(points.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 2
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def take_photo(obj: np.ndarray, shot: Shot, rng: np.random.Generator) -> np.ndarray:
    """Place the RGBA object in a scene and shoot it (RGB uint8).

    Smooth things (surface, clutter, shadows, light) are made at a half or an eighth of the frame's
    resolution and upscaled; only the object, the occluder and the sensor noise are made at full size.
    """
    width, height = shot.width, shot.height
    half = (max(16, width // 2), max(16, height // 2))
    eighth = (max(8, width // 8), max(8, height // 8))
    to_eighth = np.diag([eighth[0] / width, eighth[1] / height, 1.0])
    size = max(obj.shape[:2])
    reach = size * eighth[0] / width  # the object's size in eighth-resolution pixels
    matrix = _placement(obj, shot, rng)

    # the surface with its clutter and the object's shadow
    surface = background(shot.background, *half, rng)
    if shot.clutter:
        _clutter(surface, shot.clutter, rng)
    alpha_small = cv2.warpPerspective(obj[..., 3], to_eighth @ matrix, eighth).astype(np.float32) * (1 / 255)
    offset = (int(round(reach * shot.light[1] * 0.04)) + 1, int(round(-reach * shot.light[0] * 0.05)))
    shade = _shadow(alpha_small, offset, reach * 0.025, shot.shadow)
    surface *= cv2.resize(shade, half, interpolation=cv2.INTER_LINEAR)[..., None]
    image = cv2.resize(
        np.clip(surface, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR
    )

    # the object, warped and composited inside its own bounding box only
    h, w = obj.shape[:2]
    corners = cv2.perspectiveTransform(np.float32([[[0, 0], [w, 0], [w, h], [0, h]]]), matrix)[0]
    x0, y0, x1, y1 = _bounds(corners, width, height)
    if x1 > x0 and y1 > y0:
        local = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], dtype=np.float64) @ matrix
        patch = cv2.warpPerspective(
            obj,
            local,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0, 0),
        )
        _over(image, patch, (x0, y0))

    # a hand, an object or a sticker in front of it, with its shadow (kept off the occluder itself)
    light_shade = np.ones(eighth[::-1], dtype=np.float32)
    if shot.occlusion and x1 > x0 and y1 > y0:
        layer = _occluder(
            shot, (corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max()), rng
        )
        box = layer.getbbox()
        if box:
            _over(image, np.asarray(layer.crop(box)), box[:2])
            covered = (
                cv2.resize(np.asarray(layer)[..., 3], eighth, interpolation=cv2.INTER_AREA).astype(np.float32)
                / 255
            )
            cast = _shadow(covered, (int(reach * 0.03) + 1, int(reach * 0.02) + 1), reach * 0.02, 0.4)
            light_shade = 1 - (1 - cast) * (1 - covered)

    # light: exposure, a gradient across the frame, the colour of the light (1/8 resolution), glare
    xs = np.linspace(-0.5, 0.5, eighth[0], dtype=np.float32)[None, :]
    ys = np.linspace(-0.5, 0.5, eighth[1], dtype=np.float32)[:, None]
    direction = rng.uniform(0, 2 * math.pi)
    field = shot.exposure * (
        1 + 2 * shot.light_gradient * (xs * math.cos(direction) + ys * math.sin(direction))
    )
    field = (field * light_shade)[..., None] * _kelvin_gains(shot.kelvin)
    light = cv2.resize(
        np.clip(field * 128, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR
    )
    photo = cv2.multiply(image, light, scale=1 / 128)
    if shot.glare:
        gx = shot.centre[0] - 0.5 + rng.normal(0, 0.2) * size / width
        gy = shot.centre[1] - 0.5 + rng.normal(0, 0.2) * size / height
        radius = rng.uniform(0.08, 0.2) * size / max(width, height)
        spot = np.exp(-(((xs - gx) ** 2 + (ys - gy) ** 2) / (2 * radius**2))) * alpha_small
        glare = np.clip(spot * (255 * shot.glare), 0, 255).astype(np.uint8)
        glare = cv2.resize(glare, (width, height), interpolation=cv2.INTER_LINEAR)
        photo = cv2.add(photo, cv2.cvtColor(glare, cv2.COLOR_GRAY2RGB))
    # camera: defocus or motion blur, sensor noise (made at half resolution: demosaicing correlates it anyway)
    if shot.blur:
        photo = cv2.GaussianBlur(photo, (0, 0), shot.blur * max(width, height) / 1000)
    if shot.motion:
        length = max(3, int(shot.motion * max(width, height) / 1000))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0
        turn = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, turn, (length, length))
        photo = cv2.filter2D(photo, -1, kernel / max(float(kernel.sum()), 1e-6))
    if shot.noise:
        grain = _grain(rng, *half, shot.noise * 1.4)
        photo = cv2.add(
            photo, cv2.resize(grain, (width, height), interpolation=cv2.INTER_LINEAR), dtype=cv2.CV_8U
        )
    return photo


@cache
def _grain_tile() -> np.ndarray:
    """Unit Gaussian sensor grain, mostly shared by the channels; made once per process from a fixed seed."""
    grain = np.random.default_rng(20240611).standard_normal((GRAIN_TILE, GRAIN_TILE, 3), dtype=np.float32)
    grain[..., 1:] = grain[..., 1:] * 0.5 + grain[..., :1] * 0.5
    return grain


def _grain(rng: np.random.Generator, width: int, height: int, sigma: float) -> np.ndarray:
    """Noise of standard deviation ~`sigma` (int16), tiled from a random offset into the grain tile:
    drawing fresh normals per pixel cost more than the rest of the photo."""
    dy, dx = (int(v) for v in rng.integers(GRAIN_TILE, size=2))
    tile = np.roll(_grain_tile(), (dy, dx), axis=(0, 1))
    reps = (-(-height // GRAIN_TILE), -(-width // GRAIN_TILE), 1)
    return (np.tile(tile, reps)[:height, :width] * sigma).astype(np.int16)


def flat_shot(face: np.ndarray, shot: Shot, rng: np.random.Generator) -> np.ndarray:
    """A close-up of a flat printed area (a logo, a panel) filling most of the frame."""
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    return take_photo(rgba, shot, rng)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG, 4:2:0, no metadata: the same pixels always give the same bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(quality), subsampling=2, optimize=False)
    return buffer.getvalue()


def encode_png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- the error path


def not_a_product(rng: np.random.Generator, long_side: tuple[int, int], kind: str) -> bytes:
    """An image that shows no product: a landscape, a placeholder or a chat screenshot (PNG), a bare surface."""
    width, height = _frame(rng, long_side)
    if kind == "landscape":
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        sky_top, sky_low = (
            _hsv(rng, (0.55, 0.65), (0.4, 0.8), (0.6, 0.95)),
            _hsv(rng, (0.5, 0.62), (0.1, 0.4), (0.85, 1.0)),
        )
        image = sky_top + (sky_low - sky_top) * (ys / height)[..., None]
        for layer in range(3):
            ridge = height * (0.45 + 0.12 * layer) + np.cumsum(rng.normal(0, height * 0.01, width))
            ridge = cv2.GaussianBlur(ridge.astype(np.float32)[None, :], (0, 0), width * 0.01)[0]
            colour = _hsv(rng, (0.22, 0.4), (0.3, 0.7), (0.25 + 0.15 * layer, 0.4 + 0.2 * layer))
            below = ys > ridge[None, :]
            image[below] = colour * (0.85 + 0.15 * fractal_noise(rng, width, height, 8, 3))[below][..., None]
        image += rng.standard_normal(image.shape, dtype=np.float32) * 3
        return encode_jpeg(np.clip(image, 0, 255).astype(np.uint8), int(rng.integers(70, 92)))
    if kind == "placeholder":
        tone = tuple(int(c) for c in _hsv(rng, (0, 1), (0.0, 0.15), (0.85, 0.97)))
        canvas = Image.new("RGB", (width, height), tone)
        draw = ImageDraw.Draw(canvas)
        text = str(rng.choice(["NO IMAGE", "Photo coming soon", "Contact seller", "Image not available"]))
        draw.text(
            (width / 2, height / 2),
            text,
            font=font(TEXT_BOLD_FONT, int(min(width, height) * 0.07)),
            fill=(120, 120, 120),
            anchor="mm",
        )
        return encode_png(np.asarray(canvas))
    if kind == "screenshot":
        canvas = Image.new("RGB", (width, height), (250, 250, 250))
        draw = ImageDraw.Draw(canvas)
        line = max(14, height // 30)
        draw.rectangle(
            [0, 0, width, line * 2.2], fill=tuple(int(c) for c in _hsv(rng, (0, 1), (0.4, 0.8), (0.5, 0.8)))
        )
        y = line * 3
        while y < height - line * 2:
            bubble_w = width * rng.uniform(0.3, 0.7)
            left = width * 0.05 if rng.random() < 0.5 else width * 0.95 - bubble_w
            draw.rounded_rectangle(
                [left, y, left + bubble_w, y + line * 1.6], radius=line // 2, fill=(225, 232, 240)
            )
            draw.text(
                (left + line * 0.4, y + line * 0.3),
                "hello, is this still available?"[: int(rng.integers(8, 31))],
                font=font(TEXT_FONT, int(line * 0.8)),
                fill=(40, 40, 40),
            )
            y += line * 2.4
        return encode_png(np.asarray(canvas))
    if kind != "surface":
        raise ValueError(f"unknown not-a-product kind {kind!r}")
    image = background(str(rng.choice(BACKGROUNDS)), width, height, rng)
    image += rng.standard_normal(image.shape, dtype=np.float32) * 3
    return encode_jpeg(np.clip(image, 0, 255).astype(np.uint8), int(rng.integers(60, 90)))


def undecodable(rng: np.random.Generator, sample_jpeg: bytes, kind: str) -> bytes:
    """Bytes no decoder accepts, the ways uploads break: a truncated JPEG, garbage, an error page, nothing."""
    if kind == "truncated":
        return sample_jpeg[: int(len(sample_jpeg) * rng.uniform(0.3, 0.7))]
    if kind == "garbage":
        return rng.integers(0, 256, int(rng.integers(2000, 20000)), dtype=np.uint8).tobytes()
    if kind == "html":
        return (
            b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n"
        )
    if kind == "empty":
        return b""
    raise ValueError(f"unknown undecodable kind {kind!r}")


def derived_copy(data: bytes, rng: np.random.Generator) -> bytes:
    """A reuse of an official photo: the exact file, a re-encode, or a cropped and resized re-encode."""
    mode = str(rng.choice(["exact", "reencode", "crop"], p=[0.35, 0.3, 0.35]))
    if mode == "exact":
        return data
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    if mode == "crop":
        h, w = rgb.shape[:2]
        keep = rng.uniform(0.8, 0.95)
        ch, cw = int(h * keep), int(w * keep)
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        rgb = rgb[top : top + ch, left : left + cw]
        scale = rng.uniform(0.6, 1.0)
        rgb = cv2.resize(
            rgb, (max(64, int(cw * scale)), max(64, int(ch * scale))), interpolation=cv2.INTER_AREA
        )
    return encode_jpeg(np.ascontiguousarray(rgb), int(rng.integers(70, 90)))
