"""Synthetic cats and dogs: the images behind the offline asset kit.

Pure NumPy + Pillow (no TensorFlow), so the kit's image set can be made anywhere.
A *cat* is a round head with pointed ears and whiskers; a *dog* a head with floppy
ears hanging at the sides and a snout with a dark nose. Fur colours, sizes, positions,
backgrounds and clutter overlap between the classes, so colour alone does not decide.

The same drawing code makes the kit's *pre-training* task (:func:`pretrain_batch`):
six kinds of heads (three ear shapes, with or without a snout), a related task whose
features transfer to cats vs dogs without ever showing the cats-vs-dogs labels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FUR_COLOURS = (
    (222, 140, 60),  # ginger
    (150, 150, 155),  # grey
    (40, 36, 34),  # black
    (235, 228, 214),  # cream
    (140, 95, 55),  # brown
    (200, 170, 120),  # tan
)
EARS_POINTED, EARS_FLOPPY, EARS_NONE = "pointed", "floppy", "none"
PRETRAIN_CLASSES = tuple(
    (ears, snout) for ears in (EARS_POINTED, EARS_FLOPPY, EARS_NONE) for snout in (False, True)
)


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int) -> tuple:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    top = rng.integers(40, 230, size=3)
    bottom = rng.integers(40, 230, size=3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    pixels = top[None, None, :] * (1 - ramp) + bottom[None, None, :] * ramp
    pixels = np.broadcast_to(pixels, (height, width, 3)).copy()
    pixels += rng.normal(0, 12, size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(10, 60), y0 + rng.integers(10, 60)
        colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 5)))
    return image


def _ears(
    draw: ImageDraw.ImageDraw,
    kind: str,
    cx: float,
    cy: float,
    r: float,
    fur: tuple,
    rng: np.random.Generator,
) -> None:
    if kind == EARS_POINTED:
        for side in (-1, 1):
            base_x = cx + side * r * 0.55
            tip = (base_x + side * r * rng.uniform(0.1, 0.35), cy - r * rng.uniform(1.35, 1.7))
            draw.polygon(
                [(base_x - r * 0.38, cy - r * 0.55), (base_x + r * 0.38, cy - r * 0.55), tip],
                fill=fur,
            )
            inner = (255, 170, 180)
            draw.polygon(
                [
                    (base_x - r * 0.18, cy - r * 0.65),
                    (base_x + r * 0.18, cy - r * 0.65),
                    (tip[0], tip[1] + r * 0.3),
                ],
                fill=inner,
            )
    elif kind == EARS_FLOPPY:
        dark = _jitter(rng, tuple(int(c * 0.6) for c in fur), 10)
        for side in (-1, 1):
            ex = cx + side * r * 0.95
            draw.ellipse((ex - r * 0.32, cy - r * 0.75, ex + r * 0.32, cy + r * 0.75), fill=dark)


def _face(
    draw: ImageDraw.ImageDraw,
    cx: float,
    cy: float,
    r: float,
    snout: bool,
    whiskers: bool,
    rng: np.random.Generator,
) -> None:
    eye_y = cy - r * 0.2
    for side in (-1, 1):
        ex = cx + side * r * 0.38
        if whiskers:  # slit pupils on green-yellow eyes
            draw.ellipse(
                (ex - r * 0.14, eye_y - r * 0.12, ex + r * 0.14, eye_y + r * 0.12),
                fill=(190, 200, 60),
            )
            draw.ellipse(
                (ex - r * 0.03, eye_y - r * 0.11, ex + r * 0.03, eye_y + r * 0.11),
                fill=(10, 10, 10),
            )
        else:
            draw.ellipse(
                (ex - r * 0.11, eye_y - r * 0.11, ex + r * 0.11, eye_y + r * 0.11),
                fill=(25, 18, 12),
            )
    if snout:
        draw.ellipse(
            (cx - r * 0.42, cy + r * 0.05, cx + r * 0.42, cy + r * 0.75), fill=(230, 215, 195)
        )
        draw.ellipse((cx - r * 0.18, cy + r * 0.1, cx + r * 0.18, cy + r * 0.35), fill=(15, 10, 10))
    else:
        draw.polygon(
            [(cx - r * 0.08, cy + r * 0.12), (cx + r * 0.08, cy + r * 0.12), (cx, cy + r * 0.22)],
            fill=(240, 140, 150),
        )
    if whiskers:
        for side in (-1, 1):
            for k in (-1, 0, 1):
                draw.line(
                    (
                        cx + side * r * 0.15,
                        cy + r * 0.25,
                        cx + side * r * 0.95,
                        cy + r * (0.15 + 0.12 * k),
                    ),
                    fill=(245, 245, 245),
                    width=max(1, int(r * 0.03)),
                )


def draw_head(
    rng: np.random.Generator, ears: str, snout: bool, whiskers: bool, size: tuple[int, int]
) -> Image.Image:
    """One picture of a head on a cluttered background."""
    width, height = size
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    r = min(width, height) * rng.uniform(0.2, 0.32)
    cx = rng.uniform(r * 1.3, width - r * 1.3)
    cy = rng.uniform(r * 1.7, height - r * 1.1)
    fur = _jitter(rng, FUR_COLOURS[int(rng.integers(len(FUR_COLOURS)))], 25)
    _ears(draw, ears, cx, cy, r, fur, rng)
    draw.ellipse((cx - r, cy - r * 0.9, cx + r, cy + r * 0.9), fill=fur)
    if rng.random() < 0.4:  # stripes or patches on the fur
        mark = _jitter(rng, tuple(int(c * 0.55) for c in fur), 15)
        for _ in range(int(rng.integers(2, 5))):
            x = cx + rng.uniform(-0.6, 0.6) * r
            draw.line(
                (x, cy - r * 0.85, x + rng.uniform(-0.2, 0.2) * r, cy - r * 0.45),
                fill=mark,
                width=max(2, int(r * 0.08)),
            )
    _face(draw, cx, cy, r, snout, whiskers, rng)
    return image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 1.0))))


def draw_animal(rng: np.random.Generator, is_dog: bool, size: tuple[int, int]) -> Image.Image:
    """A synthetic cat (pointed ears, whiskers) or dog (floppy ears, snout)."""
    if is_dog:
        return draw_head(rng, EARS_FLOPPY, snout=True, whiskers=False, size=size)
    return draw_head(rng, EARS_POINTED, snout=False, whiskers=True, size=size)


def random_size(rng: np.random.Generator) -> tuple[int, int]:
    """Photo-like sizes that are not square, so the students' resize does real work."""
    return int(rng.integers(150, 260)), int(rng.integers(130, 220))


def pretrain_batch(
    rng: np.random.Generator, count: int, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8, side x side) and labels of the six-way pre-training task."""
    images = np.empty((count, side, side, 3), dtype=np.uint8)
    labels = np.empty((count,), dtype=np.int64)
    for i in range(count):
        label = int(rng.integers(len(PRETRAIN_CLASSES)))
        ears, snout = PRETRAIN_CLASSES[label]
        whiskers = bool(rng.random() < 0.5)
        image = draw_head(rng, ears, snout, whiskers, random_size(rng))
        images[i] = np.asarray(image.resize((side, side), Image.BILINEAR))
        labels[i] = label
    return images, labels
