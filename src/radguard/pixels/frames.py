"""Pixel data in and out: decode every frame, make 8-bit views for OCR, write back losslessly.

Decoding goes through pydicom's pixel handlers (native, RLE, JPEG, JPEG-LS, JPEG 2000 via
pylibjpeg, openjpeg and pyjpegls); YBR colour comes back as RGB. Writing re-encodes in the
input's transfer syntax when it is lossless and an encoder exists (RLE Lossless, JPEG-LS
Lossless, JPEG 2000 Lossless), and otherwise writes Explicit VR Little Endian: a lossy input is
never compressed again, and its Lossy Image Compression history is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from radguard.errors import Rejected

# PS3.5 A.4: lossless syntaxes radguard can re-encode (encoders: pydicom RLE, pyjpegls, openjpeg)
_REENCODE = (RLELossless, JPEGLSLossless, JPEG2000Lossless)
_LOSSLESS = frozenset(
    {
        RLELossless,
        JPEGLSLossless,
        JPEG2000Lossless,
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Process 14
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless, Process 14 SV1
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    }
)


@dataclass
class Pixels:
    """Every frame of one image as (frames, rows, cols, samples), with how to show it."""

    array: NDArray[np.generic]
    photometric: str  # after decoding: YBR_* comes back as RGB
    syntax: UID

    @property
    def lossy(self) -> bool:
        """Whether the input's transfer syntax loses information (PS3.5 A.4)."""
        return self.syntax.is_compressed and self.syntax not in _LOSSLESS

    @property
    def frames(self) -> int:
        return int(self.array.shape[0])


def decode(ds: Dataset) -> Pixels:
    """All frames of ``ds`` (raises Rejected when the pixel data cannot be decoded)."""
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)))
    try:
        array = ds.pixel_array
    except Exception as error:
        raise Rejected(
            f"pixel data cannot be decoded ({type(error).__name__}; transfer syntax "
            f"{syntax.name}): burned-in text cannot be ruled out"
        ) from error
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    shape = (frames, int(ds.Rows), int(ds.Columns), samples)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric.startswith("YBR") and samples == 3:
        photometric = "RGB"  # pydicom converts YBR to RGB when decoding
    return Pixels(np.ascontiguousarray(array).reshape(shape), photometric, syntax)


def display(ds: Dataset, pixels: Pixels) -> NDArray[np.uint8]:
    """8-bit views for OCR: (frames, rows, cols) grey or (frames, rows, cols, 3) colour.

    Grey images are stretched between the 0.5th and 99.8th percentile of the whole series
    (so text stays text, whatever the bit depth, sign or window); MONOCHROME1 is inverted;
    palette colour goes through its lookup tables.
    """
    array = pixels.array
    if pixels.photometric == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        rgb = apply_color_lut(array[..., 0], ds)
        return _to8(np.asarray(rgb, np.float32), int(rgb.dtype.itemsize) * 8)
    if array.shape[-1] == 3:
        bits = int(ds.get("BitsStored", 8) or 8)
        if array.dtype == np.uint8:
            same: NDArray[np.uint8] = np.asarray(array, np.uint8)
            return same
        return _to8(array.astype(np.float32), bits)
    stored = array[..., 0]
    if stored.dtype.kind == "f" and not np.isfinite(stored).all():
        # NaN or infinite samples would blank the whole view (and hide any text)
        finite = stored[np.isfinite(stored)]
        low = float(finite.min()) if finite.size else 0.0
        stored = np.nan_to_num(stored, nan=low, posinf=low, neginf=low)
    sample = stored[:: max(1, stored.shape[0] // 8)]
    lo, hi = (float(v) for v in np.percentile(np.asarray(sample), (0.5, 99.8)))
    if hi <= lo:
        lo, hi = float(stored.min()), float(stored.max())
    if hi <= lo:
        hi = lo + 1
    invert = pixels.photometric == "MONOCHROME1"
    if stored.dtype.kind in "iu" and stored.dtype.itemsize <= 2:
        # a lookup table over every possible stored value: one pass, no float copy
        bits = 8 * stored.dtype.itemsize
        signed = stored.dtype.kind == "i"
        first = -(1 << (bits - 1)) if signed else 0
        values = np.arange(first, first + (1 << bits), dtype=np.float32)
        lut = np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        if invert:
            lut = 255 - lut
        stored = stored.astype(stored.dtype.newbyteorder("="), copy=False)
        unsigned = np.dtype(f"u{stored.dtype.itemsize}")
        index = stored.view(unsigned)
        if signed:  # two's complement to offset binary: the same order as ``values``
            index = index ^ unsigned.type(1 << (bits - 1))
        table: NDArray[np.uint8] = lut[index]
        return table
    grey = stored.astype(np.float32)
    out: NDArray[np.uint8] = np.clip((grey - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    if invert:
        out = 255 - out
    return out


def _to8(array: NDArray[np.float32], bits: int) -> NDArray[np.uint8]:
    top = float(2**bits - 1) if bits > 8 else 255.0
    if bits > 8 and array.max() > 0:
        top = float(array.max())
    out: NDArray[np.uint8] = np.clip(array * (255.0 / top), 0, 255).astype(np.uint8)
    return out


def fill_value(ds: Dataset, pixels: Pixels) -> tuple[float, ...]:
    """The value that paints a box black (per sample), in the stored values' own terms."""
    array = pixels.array
    if pixels.photometric == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        count = int(array.max()) + 1
        lut = apply_color_lut(np.arange(count, dtype=array.dtype), ds)
        return (float(np.argmin(lut.astype(np.int64).sum(axis=-1))),)
    if array.shape[-1] == 3:
        return (0.0, 0.0, 0.0)
    if pixels.photometric == "MONOCHROME1":
        return (float(array.max()),)
    return (float(array.min()),)


def write_back(ds: Dataset, pixels: Pixels) -> str:
    """Store ``pixels`` in ``ds``; returns the transfer syntax written (its name)."""
    array = pixels.array
    frames, rows, cols, samples = array.shape
    out = array.reshape((rows, cols, samples) if frames == 1 else array.shape)
    if samples == 1:
        out = out[..., 0]
    bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    lossy = str(ds.get("LossyImageCompression", "") or "") == "01" or pixels.lossy
    ds.set_pixel_data(
        np.ascontiguousarray(out),
        pixels.photometric,
        bits_stored,
        generate_instance_uid=False,
    )
    if lossy:
        ds.LossyImageCompression = "01"  # PS3.3 C.7.6.1.1.5: the history stays
    target = pixels.syntax if pixels.syntax in _REENCODE else None
    if target is not None:
        try:
            ds.compress(target, generate_instance_uid=False)
        except Exception:  # noqa: BLE001 - an encoder that cannot take this image: native
            target = None
    return (target or ExplicitVRLittleEndian).name
