"""The one exception family of imgcodec: every expected failure is a ``CodecError``.

The CLI turns a ``CodecError`` into one line on stderr and a non-zero exit; anything else that
escapes is a bug.  Subclasses let callers tell the causes apart without parsing messages.
"""


class CodecError(Exception):
    """Base class of every error imgcodec reports to its user."""


class InputError(CodecError):
    """An input image (or other input file) is missing, unreadable or unsupported."""


class BitstreamError(CodecError):
    """A ``.bin`` file is not an imgcodec file, is truncated, corrupt, or of an unknown version."""


class ModelError(CodecError):
    """An unknown model or quality, or weights that are missing, tampered with or mismatched."""


class OutputError(CodecError):
    """An output path exists (without force) or cannot be written."""
