"""The typed errors of the image readers (`cxr_viewer.core.io`); every one is an `ImageLoadError`.

``str(err)`` is one short line that names what is wrong and never quotes the file's header text
(patient data); numbers that are sizes (pixels, bytes, entries) may appear.
"""

from __future__ import annotations

__all__ = [
    "CorruptImageError",
    "ImageLoadError",
    "ImageTooLargeError",
    "NotAnImageError",
    "UnreadableFileError",
    "UnsupportedImageError",
]


class ImageLoadError(Exception):
    """A file could not be turned into an image. ``str(err)`` is a short, log-safe reason.

    The subclasses say why; catch this base class to handle them all.
    """


class UnreadableFileError(ImageLoadError):
    """The file cannot be opened or read (missing, permissions, a folder, a FIFO or device)."""


class NotAnImageError(ImageLoadError):
    """The file is not an image we read: unrecognised type (PostScript, PDF...), DICOM without pixels."""


class UnsupportedImageError(ImageLoadError):
    """A real image in a form we do not show (e.g. PALETTE COLOR, unusual sample layout)."""


class CorruptImageError(ImageLoadError):
    """The file is damaged or inconsistent: truncated, undecodable, contradictory tags."""


class ImageTooLargeError(ImageLoadError):
    """The file, or what decoding it would allocate, is above a limit of `cxr_viewer.core.limits`."""
