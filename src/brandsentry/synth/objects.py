"""Packaging as a lit 3-D-ish RGBA object (box, bottle, bag, hang tag) wrapped in the faces `synth.render` prints.

Each face is printed at the pixel size it is projected to, then warped (boxes), wrapped round a cylinder
(bottles) or shaded in place (bags, tags), so print defects keep their period in the photo.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image, ImageDraw

from brandsentry.synth.brands import Design, rgb_of
from brandsentry.synth.render import (
    BAG_CRIMP,
    BAG_WIDTH,
    BOTTLE_WIDTH,
    BOX_SHAPE,
    LABEL_BOTTOM,
    LABEL_SPAN,
    LABEL_TOP,
    TAG_STRING,
    TAG_WIDTH,
    apply_print_defect,
    render_front,
    render_side,
    render_top,
)


def render_package(
    design: Design,
    size: int,
    yaw: float,
    pitch: float,
    light: tuple[float, float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """The packaging as an RGBA object about `size` px on its longest side, seen from (yaw, pitch) degrees."""
    if design.packaging in BOX_SHAPE:
        return _box(design, size, yaw, pitch, light, rng)
    if design.packaging == "bottle":
        return _bottle(design, size, yaw, light, rng)
    if design.packaging == "bag":
        return _bag(design, size, light, rng)
    if design.packaging == "label":
        return _tag(design, size, light, rng)
    raise ValueError(f"unknown packaging {design.packaging!r}")


def _rgba(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Colour (any dtype, clipped to 0..255) and coverage as one uint8 RGBA array."""
    channels = cv2.split(np.clip(rgb, 0, 255).astype(np.uint8))
    return cv2.merge([*channels, np.clip(alpha, 0, 255).astype(np.uint8)])


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    a, b = math.radians(yaw), math.radians(pitch)
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return rx @ ry


def _box(
    design: Design,
    size: int,
    yaw: float,
    pitch: float,
    light: tuple[float, float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    w, h, d = BOX_SHAPE[design.packaging]
    x, y, z = w / 2, h / 2, d / 2
    faces = {  # corners TL, TR, BR, BL as printed; outward normal
        "front": ([(-x, y, z), (x, y, z), (x, -y, z), (-x, -y, z)], (0, 0, 1), (w, h)),
        "right": ([(x, y, z), (x, y, -z), (x, -y, -z), (x, -y, z)], (1, 0, 0), (d, h)),
        "left": ([(-x, y, -z), (-x, y, z), (-x, -y, z), (-x, -y, -z)], (-1, 0, 0), (d, h)),
        "top": ([(-x, y, -z), (x, y, -z), (x, y, z), (-x, y, z)], (0, 1, 0), (w, d)),
    }
    rot = _rotation(yaw, pitch)
    distance = 4.5 * max(w, h, d)
    projected = {}
    for name, (corners, normal, extent) in faces.items():
        cam = np.array(corners) @ rot.T
        pts = cam[:, :2] * (distance / (distance - cam[:, 2:3]))
        pts[:, 1] *= -1
        projected[name] = (pts, rot @ np.array(normal, dtype=float), extent)
    all_pts = np.concatenate([p for p, _, _ in projected.values()])
    lo, hi = all_pts.min(axis=0), all_pts.max(axis=0)
    scale = size / float(max(hi - lo))
    pad = 2
    out_w, out_h = (
        int(math.ceil((hi - lo)[0] * scale)) + 2 * pad,
        int(math.ceil((hi - lo)[1] * scale)) + 2 * pad,
    )
    # Premultiplied faces add up exactly along shared edges; convex, so no face hides another.
    canvas = np.zeros((out_h, out_w, 4), dtype=np.uint8)
    light_dir = np.array(light, dtype=float) / np.linalg.norm(light)
    for name, (pts, normal, extent) in projected.items():
        quad = ((pts - lo) * scale + pad).astype(np.float32)
        signed_area = 0.5 * sum(
            quad[i, 0] * quad[(i + 1) % 4, 1] - quad[(i + 1) % 4, 0] * quad[i, 1] for i in range(4)
        )
        if signed_area <= 1.0:  # facing away (or edge-on)
            continue
        tex_w = max(16, int(extent[0] * scale))
        tex_h = max(16, int(extent[1] * scale))
        if name == "front":
            texture, _ = render_front(design, tex_w, tex_h)
        elif name == "top":
            texture = render_top(design, tex_w, tex_h)
        else:
            texture = render_side(design, tex_w, tex_h)
        texture = apply_print_defect(texture, design, rng)
        shade = 0.62 + 0.42 * max(0.0, float(normal @ light_dir))
        rgba = cv2.cvtColor(cv2.convertScaleAbs(texture, alpha=shade), cv2.COLOR_RGB2RGBA)
        src = np.float32([[0, 0], [tex_w, 0], [tex_w, tex_h], [0, tex_h]])
        matrix = cv2.getPerspectiveTransform(src, quad)
        warped = cv2.warpPerspective(
            rgba, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0)
        )
        canvas = cv2.add(canvas, warped)
    alpha = canvas[..., 3]
    rgb = cv2.divide(canvas[..., :3], cv2.cvtColor(alpha, cv2.COLOR_GRAY2RGB), scale=255)
    return _rgba(rgb, alpha)


def _bottle(
    design: Design, size: int, yaw: float, light: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    h = int(size)
    w = max(16, int(h * BOTTLE_WIDTH))
    half = w / 2
    neck = 0.3 * w
    shoulder = [
        (half + neck / 2 + (half - neck / 2) * math.sin(t), 0.17 * h + 0.12 * h * (1 - math.cos(t)))
        for t in np.linspace(0, math.pi / 2, 10)
    ]
    right = [(half + neck / 2, 0.075 * h), *shoulder, (w - 1, 0.97 * h), (w - 0.06 * w, h - 1)]
    outline = right + [(w - x, y) for x, y in reversed(right)]
    mask = Image.new("L", (w * 2, h * 2), 0)
    mask_draw = ImageDraw.Draw(mask)
    mask_draw.polygon([(px * 2, py * 2) for px, py in outline], fill=255)
    cap = [(half - neck * 0.62) * 2, 0, (half + neck * 0.62) * 2, 0.095 * h * 2]
    mask_draw.rounded_rectangle(cap, radius=int(0.02 * h), fill=255)
    alpha = np.asarray(mask.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)

    body = np.empty((h, w, 3), dtype=np.float32)
    body[:] = np.array(rgb_of(design.palette.secondary), dtype=np.float32)
    cap_rows = int(0.095 * h)
    body[:cap_rows] = np.array(rgb_of(design.palette.primary), dtype=np.float32)

    # The label wraps the cylinder: column x sees the label at angle asin(x / r), turned by the yaw.
    top, bottom = int(LABEL_TOP * h), int(LABEL_BOTTOM * h)
    span = LABEL_SPAN
    label_w = int(2 * span / math.pi * w * 1.1)
    label, _ = render_front(design, label_w, bottom - top)
    label = apply_print_defect(label, design, rng).astype(np.float32)
    xs = (np.arange(w, dtype=np.float32) + 0.5 - half) / half
    theta = np.arcsin(np.clip(xs, -0.999, 0.999)) + math.radians(yaw)
    u = (theta + span) / (2 * span) * label_w
    inside = (u >= 0) & (u < label_w - 1)
    map_x = np.repeat(u[None, :], bottom - top, axis=0).astype(np.float32)
    map_y = np.repeat(np.arange(bottom - top, dtype=np.float32)[:, None], w, axis=1)
    wrapped = cv2.remap(label, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    band = body[top:bottom]
    band[:, inside] = wrapped[:, inside]

    # Cylinder shading from the light's horizontal component, plus a specular stripe.
    lx = float(np.clip(light[0] / (np.linalg.norm(light) + 1e-9), -1, 1))
    normal_x = np.sin(np.arcsin(np.clip(xs, -0.999, 0.999)))
    shade = 0.58 + 0.38 * np.clip(np.cos(np.arcsin(np.clip(xs, -0.999, 0.999))) + 0.6 * lx * normal_x, 0, 1.2)
    highlight = 80 * np.exp(-(((xs - (0.45 * lx - 0.35)) / 0.07) ** 2))
    body = body * shade[None, :, None] + highlight[None, :, None]
    return _rgba(body, alpha)


def _bag(
    design: Design, size: int, light: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    h = int(size)
    w = max(16, int(h * BAG_WIDTH))
    crimp = int(BAG_CRIMP * h)
    face, _ = render_front(design, w, h - crimp)
    face = apply_print_defect(face, design, rng).astype(np.float32)
    image = np.empty((h, w, 3), dtype=np.float32)
    image[crimp:] = face
    image[:crimp] = np.array(rgb_of(design.palette.primary), dtype=np.float32)
    ridges = 1 + 0.12 * np.sin(np.arange(w, dtype=np.float32) * 2 * math.pi / max(4, w / 40))
    image[:crimp] *= ridges[None, :, None]
    # A filled pouch: brighter in the middle, darker towards its edges, a few soft creases.
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    nx, ny = (xs - w / 2) / (w / 2), (ys - h * 0.55) / (h / 2)
    lx = float(light[0] / (np.linalg.norm(light) + 1e-9))
    shade = 1.06 - 0.28 * nx**2 - 0.12 * ny**2 + 0.1 * lx * nx
    for _ in range(int(rng.integers(2, 5))):
        angle, offset, width = rng.uniform(-0.6, 0.6), rng.uniform(-0.8, 0.8), rng.uniform(0.02, 0.06)
        distance = nx * math.cos(angle) + ny * math.sin(angle) - offset
        shade += float(rng.choice([-1, 1])) * 0.06 * np.exp(-((distance / width) ** 2))
    image *= shade[..., None]
    mask = Image.new("L", (w * 2, h * 2), 0)
    teeth = max(8, w // 14)
    top_edge = [(2 * w * k / teeth, 0 if k % 2 == 0 else 0.018 * h * 2) for k in range(teeth + 1)]
    waist = 0.025 * w
    body = [
        (2 * w - 2 * waist, h),
        (2 * w, 2 * h - 0.04 * h),
        (2 * w * 0.96, 2 * h - 1),
        (2 * w * 0.04, 2 * h - 1),
        (0, 2 * h - 0.04 * h),
        (2 * waist, h),
    ]
    ImageDraw.Draw(mask).polygon([*top_edge, *body], fill=255)
    alpha = np.asarray(mask.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    return _rgba(image, alpha)


def _tag(
    design: Design, size: int, light: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """A garment's hang tag on its string."""
    h = int(size)
    string_h = int(TAG_STRING * h)
    tag_h = h - string_h
    w = max(16, int(tag_h * TAG_WIDTH))
    face, _ = render_front(design, w, tag_h)
    face = apply_print_defect(face, design, rng)
    canvas = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    tag_mask = Image.new("L", (w, tag_h), 0)
    mask_draw = ImageDraw.Draw(tag_mask)
    mask_draw.rounded_rectangle([0, 0, w - 1, tag_h - 1], radius=int(0.08 * w), fill=255)
    hole_r, hole_y = 0.045 * w, 0.045 * tag_h + 0.045 * w
    mask_draw.ellipse([w / 2 - hole_r, hole_y - hole_r, w / 2 + hole_r, hole_y + hole_r], fill=0)
    tag = Image.fromarray(face).convert("RGBA")
    tag.putalpha(tag_mask)
    canvas.alpha_composite(tag, (0, string_h))
    draw = ImageDraw.Draw(canvas)
    ring = hole_r * 1.6
    draw.ellipse(
        [w / 2 - ring, string_h + hole_y - ring, w / 2 + ring, string_h + hole_y + ring],
        outline=(150, 150, 155, 255),
        width=max(2, int(hole_r * 0.5)),
    )
    sway = float(rng.uniform(-0.25, 0.25)) * w
    curve = [(w / 2 + sway * (1 - t) ** 2, t * (string_h + hole_y - hole_r)) for t in np.linspace(0, 1, 12)]
    draw.line(curve, fill=(40, 36, 30, 255), width=max(2, int(0.008 * h)))
    image = np.asarray(canvas, dtype=np.float32)
    lx = float(light[0] / (np.linalg.norm(light) + 1e-9))
    xs = (np.arange(w, dtype=np.float32) - w / 2) / (w / 2)
    image[..., :3] *= (1.0 - 0.1 * xs**2 + 0.08 * lx * xs)[None, :, None]
    return np.clip(image, 0, 255).astype(np.uint8)
