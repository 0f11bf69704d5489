"""imgcodec files as a Pillow image format, ``IMGCODEC``.

    import imgcodec
    from PIL import Image

    im = Image.open("photo.bin")                        # recognised by its magic bytes b"IMGC"
    im.save("photo.imgc", format="IMGCODEC", quality=4)  # or model=, target_size=, target_bpp=, refine=

``import imgcodec`` imports neither Pillow nor torch for this: when Pillow is already imported the
format is registered at once, otherwise the first import of ``PIL.Image`` registers it.  Opening a
file reads and validates its header (``bitstream.read_layout``: size, mode, the file's length, then
its CRC32 in blocks, so memory stays bounded whatever the file's size) and its metadata: ``im.info``
holds ``model``, ``quality`` and, where the file has them, ``icc_profile``, ``exif`` and ``xmp``, as
``imgcodec.decode`` gives them, so ``im.save("x.png")`` keeps the profile.  Torch is imported when
the pixels are first needed (``im.load()``, ``im.convert``, …) or when an image is saved.

Errors are Pillow's: a file that is not a sound imgcodec file raises ``PIL.UnidentifiedImageError``
at ``Image.open``; a damaged payload or weights that are not installed raise ``OSError`` at
``load()``; bad save options raise ``ValueError`` and other failures to save ``OSError``.  Each is
raised from the ``imgcodec.CodecError`` that says why (its ``__cause__``).  ``Image.MAX_IMAGE_PIXELS``
is the application's: the plugin applies it as Pillow does and never changes it.

Save options (``im.save(..., format="IMGCODEC", **options)``) are those of ``imgcodec.encode``:
``quality``, ``model``, ``target_size`` (bytes), ``target_bpp``, ``refine``.  Files end in ``.imgc``
or ``.bin``; without ``format=`` Pillow picks the format from that extension.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from types import MappingProxyType

from ..errors import BitstreamError, CodecError, ModelError
from ..format import bitstream

FORMAT = "IMGCODEC"
EXTENSIONS = (".imgc", ".bin")
SAVE_OPTIONS = ("quality", "model", "target_size", "target_bpp", "refine")
PILLOW_NAMES = MappingProxyType({"icc": "icc_profile"})  # a metadata part's key in ``Image.info``, where it differs


def _accept(prefix: bytes) -> bool:
    return prefix[: len(bitstream.MAGIC)] == bitstream.MAGIC


def register() -> None:
    """Register the ``IMGCODEC`` format with Pillow (once; imports Pillow, not torch)."""
    from PIL import Image, ImageFile, UnidentifiedImageError  # deferred: ``import imgcodec`` must not import Pillow

    if FORMAT in Image.OPEN:
        return

    class ImgcodecImageFile(ImageFile.ImageFile):
        format = FORMAT
        format_description = "imgcodec learned image codec"

        def _open(self) -> None:
            try:
                layout = bitstream.read_layout(self.fp, max_pixels=bitstream.DEFAULT_MAX_PIXELS)
                metadata = _read_metadata(self.fp, layout)
            except CodecError as exc:
                name = getattr(self, "filename", None) or self.fp
                raise UnidentifiedImageError(f"cannot identify image file {name!r}: {exc}") from exc
            header = layout.header
            self._size = (header.width, header.height)
            self._mode = header.mode
            self.info["model"] = header.model
            quality = _common_quality(header)
            if quality is not None:  # on the common scale; absent where the model is not installed
                self.info["quality"] = quality
            self.info.update(metadata)
            self.tile = [ImageFile._Tile(FORMAT, (0, 0, header.width, header.height), 0, None)]

    class ImgcodecDecoder(ImageFile.PyDecoder):
        _pulls_fd = True

        def decode(self, buffer):
            from ..light.dispatch import decode  # deferred: torch or ONNX Runtime, on the first decode

            assert self.fd is not None
            try:
                img = decode(self.fd.read())
            except CodecError as exc:
                raise OSError(f"cannot decode imgcodec file: {exc}") from exc
            self.set_as_raw(img.tobytes(), img.mode)
            return -1, 0

    def save(im, fp, filename) -> None:
        from ..light.dispatch import encode  # deferred: torch or ONNX Runtime, on the first encode

        options = {k: im.encoderinfo[k] for k in SAVE_OPTIONS if im.encoderinfo.get(k) is not None}
        try:
            data = encode(im, **options)
        except ModelError as exc:  # an unknown model, a quality out of range: a bad option
            raise ValueError(str(exc)) from exc
        except CodecError as exc:
            raise OSError(f"cannot write imgcodec file: {exc}") from exc
        fp.write(data)

    Image.register_open(FORMAT, ImgcodecImageFile, _accept)
    Image.register_decoder(FORMAT, ImgcodecDecoder)
    Image.register_save(FORMAT, save)
    Image.register_extensions(FORMAT, list(EXTENSIONS))
    Image.register_mime(FORMAT, "image/x-imgcodec")


def _common_quality(header: bitstream.Header):
    """The file's quality on the common scale (its header holds the position on the model's ladder)."""
    from ..models.store import default_store  # deferred: the store is read when a file is opened

    return default_store().file_quality(header.model, header.quality)


def _read_metadata(fp, layout: bitstream.Layout) -> dict[str, bytes]:
    """The file's ICC profile, EXIF and XMP under Pillow's names, read from their parts alone."""
    names = layout.header.metadata_names
    first = len(layout.lengths) - len(names)
    out = {}
    for i, name in enumerate(names, first):
        if layout.lengths[i] > bitstream.MAX_PACKED_METADATA:  # refused unread
            raise BitstreamError(f"corrupt {name} metadata")
        fp.seek(layout.part_offset(i))
        out[PILLOW_NAMES.get(name, name)] = bitstream.inflate_metadata(name, fp.read(layout.lengths[i]))
    return out


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the loader of ``PIL.Image`` to register the format after it runs."""

    def find_spec(self, name, path=None, target=None):
        if name != "PIL.Image":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        register()

    def __getattr__(self, name):  # get_source, get_resource_reader, …: the wrapped loader's
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)


def install() -> None:
    """Register now if Pillow is imported, else when ``PIL.Image`` is first imported."""
    if "PIL.Image" in sys.modules:
        register()
    elif not any(isinstance(f, _RegisterOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterOnImport())


install()
