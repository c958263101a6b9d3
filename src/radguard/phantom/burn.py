"""Burned-in text: names, IDs, dates and institutions drawn into pixel data with Pillow.

Text is drawn without anti-aliasing (font mode "1") and with Pillow's basic layout engine, so
a glyph mask is exact and reproducible: a test can render the same text in the same font and
check that every pixel under the mask has the recorded ink value. Fonts: Pillow's built-in
bitmap font, its built-in scalable font (Aileron), and DejaVu / Liberation TrueType fonts when
they are installed under /usr/share/fonts (Debian: fonts-dejavu-core, fonts-liberation2);
missing ones are skipped and the answer key records which were used.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont, features

BITMAP = "pil-bitmap"
BUILTIN = "pil-aileron"
_FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
_TTF_NAMES = (
    "DejaVuSans.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "LiberationSans-Regular.ttf",
    "LiberationMono-Regular.ttf",
)

AnyFont = ImageFont.ImageFont | ImageFont.FreeTypeFont


@dataclass(frozen=True)
class Font:
    """A font by name (``pil-bitmap``, ``pil-aileron`` or a TTF file name) and pixel size."""

    name: str
    size: int


@dataclass(frozen=True)
class Box:
    """Where one line of text was burned: top-left corner, size, and the ink used."""

    x: int
    y: int
    w: int
    h: int
    text: str
    font: Font
    ink: tuple[int, ...]


@lru_cache(maxsize=1)
def _ttf_paths() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in _FONT_DIRS:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*.ttf")):
            if path.name in _TTF_NAMES and path.name not in found:
                found[path.name] = path
    return found


@lru_cache(maxsize=1)
def available_fonts() -> tuple[str, ...]:
    """Font names usable here: the built-ins, then any of the TrueType fonts found."""
    names = [BITMAP]
    if features.check("freetype2"):
        names.append(BUILTIN)
        names.extend(n for n in _TTF_NAMES if n in _ttf_paths())
    return tuple(names)


@lru_cache(maxsize=64)
def load_font(font: Font) -> AnyFont:
    """The Pillow font for ``font`` (basic layout: same glyph placement everywhere)."""
    if font.name == BITMAP:
        return ImageFont.load_default_imagefont()
    basic = ImageFont.Layout.BASIC
    if font.name == BUILTIN:
        builtin = ImageFont.load_default(size=font.size)
        assert isinstance(builtin, ImageFont.FreeTypeFont)
        return builtin.font_variant(layout_engine=basic)
    path = _ttf_paths().get(font.name)
    if path is None:
        raise FileNotFoundError(f"font {font.name} is not installed under /usr/share/fonts")
    return ImageFont.truetype(str(path), font.size, layout_engine=basic)


def text_mask(text: str, font: Font) -> NDArray[np.bool_]:
    """The glyph mask of ``text`` in ``font``, cropped to its bounding box (rows, cols)."""
    pil_font = load_font(font)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = (int(v) for v in probe.textbbox((0, 0), text, font=pil_font))
    canvas = Image.new("L", (max(right - left, 1), max(bottom - top, 1)), 0)
    draw = ImageDraw.Draw(canvas)
    draw.fontmode = "1"  # no anti-aliasing: every pixel is ink or untouched
    draw.text((-left, -top), text, fill=255, font=pil_font)
    mask: NDArray[np.bool_] = np.asarray(canvas) > 127
    return mask


def burn(image: NDArray[Any], text: str, font: Font, x: int, y: int, ink: tuple[int, ...]) -> Box:
    """Draw ``text`` into ``image`` (rows, cols) or (rows, cols, 3) with its top-left at x, y.

    The text must fit inside the image; ``ink`` has one value per sample.
    """
    mask = text_mask(text, font)
    h, w = mask.shape
    rows, cols = image.shape[:2]
    if x < 0 or y < 0 or x + w > cols or y + h > rows:
        raise ValueError(f"text {w}x{h} at ({x}, {y}) does not fit a {cols}x{rows} image")
    region = image[y : y + h, x : x + w]
    region[mask] = ink if image.ndim == 3 else ink[0]
    return Box(x, y, w, h, text, font, ink)


def burn_block(
    image: NDArray[Any],
    lines: list[str],
    corner: str,
    fonts: list[Font],
    ink: tuple[int, ...],
    margin: int = 4,
    offset: int = 0,
) -> list[Box]:
    """Burn ``lines`` stacked in a corner (``tl``, ``tr``, ``bl``, ``br``), one font per line.

    ``offset`` moves the block away from its top or bottom edge. Lines that would not fit the
    width are shortened from the end until they do.
    """
    rows, cols = image.shape[:2]
    masks = []
    for line, font in zip(lines, fonts, strict=True):
        text = line
        while text and text_mask(text, font).shape[1] > cols - 2 * margin:
            text = text[:-1].rstrip()
        masks.append((text, font, text_mask(text, font).shape))
    total = sum(shape[0] + 2 for _, _, shape in masks)
    y = margin + offset if corner[0] == "t" else rows - margin - offset - total
    if y < 0 or y + total > rows:
        raise ValueError(f"{len(lines)} lines ({total} px) do not fit {rows} rows")
    boxes = []
    for text, font, (h, w) in masks:
        x = margin if corner[1] == "l" else cols - margin - w
        boxes.append(burn(image, text, font, x, y, ink))
        y += h + 2
    return boxes
