"""What the model is shown: an `XrayImage` -> grey float32 (H, W) in [0, 1], by the input contract.

The contract is written once, in ``cral_model.preprocessing`` (module docstring); this is its
`XrayImage` side, used by the viewer and ``cxr-triage`` alike:

- PNG / JPEG / TIFF: ``pixels / white`` over the range the reader states (`XrayImage.value_range`:
  (0, 255) for 8-bit, (0, 65535) for 16-bit), so an NIH PNG gives exactly the array the training
  loader gives (uint8 / 255).
- DICOM: the file's VOI LUT (output over its range), else its first window (DICOM linear), else the
  stored range after the modality LUT; MONOCHROME1 already inverted by the reader. The display window
  the reader drags around on screen never reaches the model.

Pure: the image is never modified.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxr_viewer.core.windowing import apply_window, voi_lut_display

if TYPE_CHECKING:
    from cxr_viewer.core.image import XrayImage

__all__ = ["NoStatedRangeError", "network_input"]


class NoStatedRangeError(ValueError):
    """The image does not say which values are black and white, so the model cannot be fed it."""


def network_input(image: XrayImage) -> np.ndarray:
    """The image as the network's grey [0, 1] float32 array (H, W)."""
    if image.format == "DICOM":
        if image.voi_lut is not None:
            lut = voi_lut_display(image)
            assert lut is not None
            return lut
        if image.window is not None:
            return apply_window(image.pixels, *image.window)
    if image.value_range is None:
        raise NoStatedRangeError(f"{image.format} image without a stated value range")
    lo, hi = image.value_range
    out: np.ndarray  # numpy's stubs give the two branches different dtypes
    if lo == 0.0:  # the common case, written as training does it (uint8 / 255): bit for bit the same
        out = image.pixels / np.float32(hi)
    else:
        out = (image.pixels - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)
