"""Safe image loading and saving, in four small modules and one writer.

* ``decode``: the allowlisted, bomb-checked, fully decoded load (orientation, modes, alpha, ICC, EXIF).
* ``encode``: the file bytes for a result and the save policy (never over an input, never a partial file).
* ``codecs``: byte-level codecs Pillow lacks (EXIF orientation patch, 16-bit colour PNG and TIFF).
* ``atomic``: the one atomic writer (temp file in the target folder, fsync, ``os.replace``), which the
  model registry and the exporter use too.
* ``formats``: the one table of input suffixes and output formats; ``arrays``: small array helpers;
  ``jpeg_quality``: the quality a JPEG input was saved at.

Everything callers need is importable from ``sr3_desktop.core.imageio``. See docs/reliability.md.
"""

from sr3_desktop.core.imageio.arrays import from_uint8, to_uint8, to_uint16, upscale_alpha
from sr3_desktop.core.imageio.atomic import (
    TEMP_PREFIX,
    atomic_file,
    cleanup_stale_temp_files,
    copy_atomically,
    write_atomically,
)
from sr3_desktop.core.imageio.codecs import encode_png16, encode_tiff16, reset_exif_orientation
from sr3_desktop.core.imageio.decode import (
    MAX_INPUT_PIXELS,
    MAX_OUTPUT_PIXELS,
    LoadedImage,
    check_input_size,
    check_output_size,
    load_image,
)
from sr3_desktop.core.imageio.encode import (
    JPEG_QUALITY,
    WEBP_QUALITY,
    OutputExistsError,
    encode_image,
    save_image,
    save_notes,
)
from sr3_desktop.core.imageio.formats import (
    ALLOWED_FORMATS,
    DEFAULT_FORMAT,
    OUTPUT_FORMATS,
    SAVE_FORMATS,
    SUPPORTED_EXTENSIONS,
    OutputFormat,
    format_of_path,
    is_input_suffix,
    open_dialog_filter,
    output_format,
)

__all__ = [
    "ALLOWED_FORMATS", "DEFAULT_FORMAT", "JPEG_QUALITY", "MAX_INPUT_PIXELS", "MAX_OUTPUT_PIXELS", "OUTPUT_FORMATS",
    "SAVE_FORMATS", "SUPPORTED_EXTENSIONS", "TEMP_PREFIX", "WEBP_QUALITY", "LoadedImage", "OutputExistsError",
    "OutputFormat", "atomic_file", "check_input_size", "check_output_size", "cleanup_stale_temp_files",
    "copy_atomically", "encode_image", "encode_png16", "encode_tiff16", "format_of_path", "from_uint8",
    "is_input_suffix", "load_image", "open_dialog_filter", "output_format", "reset_exif_orientation", "save_image",
    "save_notes", "to_uint8", "to_uint16", "upscale_alpha", "write_atomically",
]
