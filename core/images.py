"""One image decoder and one content hash for the whole project.

Why one: training, audits and `curate split` must agree on which files are usable (an image `split`
rejects is never trained on, a half-copied JPEG fails loudly instead of training as grey) and on the
content hash that joins audit rows, predictions and split manifests.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Named like images but in formats `decode_image` refuses: listed by `walk_images` so that each gets a
# status ("unsupported format (GIF)") instead of vanishing with the text files.
UNSUPPORTED_EXTS = (".gif", ".tif", ".tiff", ".heic", ".heif", ".avif")
# Decompression-bomb guard (Pillow warns at ~89 MP): above MAX_PIXELS (MAX_JPEG_PIXELS for a JPEG) an
# image is refused with its size; above DECODE_PIXELS it is decoded reduced (JPEG) or resized, so one
# huge file cannot take gigabytes. Face crops and camera photos pass; every audit and model input is
# far smaller than DECODE_PIXELS.
MAX_PIXELS = 50_000_000
MIN_SIDE = 16  # below this an image is refused: "too small (WxH)"
_KINDS = {stat.S_IFDIR: "directory", stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "device",
          stat.S_IFBLK: "device"}  # fmt: skip
MAX_JPEG_PIXELS = 400_000_000  # JPEGs decode at 1/8 scale by DCT scaling: 400 MP costs what 6 MP does
DECODE_PIXELS = 4_000_000
# A JPEG above STREAM_BYTES is checked from its first and last HEAD_BYTES and decoded from the file
STREAM_BYTES = 16 * 1024 * 1024
HEAD_BYTES = 1024 * 1024


def decode_image(path: Path) -> tuple[np.ndarray | None, str]:
    """Decode (OpenCV BGR) or say why not: return (image, "") or (None, reason). Images above 4 MP
    come back reduced (DECODE_PIXELS); above 50 MP (400 MP for a JPEG) they are refused.

    Why not just cv2.imread: OpenCV silently pads a truncated JPEG with grey and returns None without
    a reason.
    """
    try:
        mode = os.stat(path).st_mode  # follows symlinks: a dangling one or a loop is an OSError
        if not stat.S_ISREG(mode):  # a FIFO would block the read forever, a directory cannot be read
            return None, f"not a regular file ({_KINDS.get(stat.S_IFMT(mode), 'special file')})"
        data, whole = _read(Path(path))
    except OSError as e:
        return None, f"unreadable file ({e.strerror})"
    if not data:
        return None, "empty file"
    is_jpeg = data[:2] == b"\xff\xd8"
    if not is_jpeg and data[:8] != b"\x89PNG\r\n\x1a\n" and data[:2] != b"BM" and data[8:12] != b"WEBP":
        fmt = unsupported_format(data)
        return None, f"unsupported format ({fmt})" if fmt else "not an image (no JPEG/PNG/BMP/WebP signature)"
    if not whole and (not is_jpeg or _jpeg_size(data) is None):
        data, whole = Path(path).read_bytes(), True  # the header is further in: read it all after all
    tail = data if whole else _tail(Path(path))
    if is_jpeg and tail.rfind(b"\xff\xd9") < tail.rfind(b"\xff\xda"):  # no end marker after the last scan
        return None, "truncated JPEG (no end-of-image marker)"  # (bytes after the end marker are harmless)
    size, too_large = _header(data, is_jpeg)
    if too_large:
        return None, too_large
    if is_jpeg:
        with _libjpeg_messages() as said:
            if whole:
                img = cv2.imdecode(np.frombuffer(data, np.uint8), _decode_flag(size))
            else:  # streamed from the file by libjpeg: a 40 MB JPEG is never held in memory whole
                img = cv2.imread(str(path), _decode_flag(size))
        if img is not None and said and "Corrupt JPEG data" in said[0]:
            return None, "corrupt JPEG data (libjpeg: " + said[0].split("Corrupt JPEG data: ")[1].split("\n")[0] + ")"
    else:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None, "corrupt image (decoder failed)"
    if min(img.shape[:2]) < MIN_SIDE:  # nothing to measure or learn: a 1x1 "face" must not be trained on
        return None, f"too small ({img.shape[1]}x{img.shape[0]})"
    return reduce_to(img, DECODE_PIXELS), ""  # other formats, or JPEGs still too large at 1/8


def unsupported_format(data: bytes) -> str | None:
    """The name of an image format `decode_image` does not read (GIF, TIFF, HEIC, AVIF), from the file's
    first bytes; None for anything else.

    Why: "not an image" misleads a user whose photo is a real GIF or TIFF; the format's name says what to
    convert instead."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):  # ISO media: the brand says which
        return "AVIF"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1"):
        return "HEIC"
    return None


@contextmanager
def _libjpeg_messages() -> Iterator[list[str]]:
    """What libjpeg prints while decoding (fd 2; it decodes a damaged scan anyway and names no file).

    Captured through a pipe so the caller can turn "Corrupt JPEG data: ..." into a reason for the file
    it is decoding; the messages are a few dozen bytes, far below a pipe's buffer."""
    out: list[str] = []
    read_fd, write_fd = os.pipe()
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(write_fd, 2)
        yield out
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as r:
            out.append(r.read().decode(errors="replace"))
        out[:] = [m for m in out if m]


def _header(data: bytes, is_jpeg: bool) -> tuple[tuple[int, int] | None, str]:
    """(width, height) from the file's header alone (None when unreadable: the decoder will say why),
    and why the image is refused as too large ("" when it is not)."""
    size = _jpeg_size(data) if is_jpeg else _pillow_size(data)
    limit = MAX_JPEG_PIXELS if is_jpeg else MAX_PIXELS
    if size is None or size[0] * size[1] <= limit:
        return size, ""
    w, h = size
    return size, f"image too large ({w}x{h}, {w * h / 1e6:.0f} MP; the limit is {limit / 1e6:.0f} MP)"


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a JPEG's start-of-frame marker (no decoding, no size limit of its own)."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _pillow_size(data: bytes) -> tuple[int, int] | None:
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError:  # beyond Pillow's own limit (~179 MP): certainly too large
        return MAX_PIXELS, MAX_PIXELS
    except Exception:  # noqa: BLE001 - an unreadable header is for the decoder to report
        return None


def _read(path: Path) -> tuple[bytes, bool]:
    """The file's bytes and True, or for a file above STREAM_BYTES only its head and False."""
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size <= STREAM_BYTES:
            return f.read(), True
        return f.read(HEAD_BYTES), False


def _tail(path: Path) -> bytes:
    """A big JPEG's last bytes, where its end-of-image marker is; the whole file when they hold none
    (a file with trailing data after its end marker)."""
    with path.open("rb") as f:
        f.seek(-HEAD_BYTES, os.SEEK_END)
        tail = f.read()
    return tail if b"\xff\xd9" in tail else path.read_bytes()


def _decode_flag(size: tuple[int, int] | None) -> int:
    """A JPEG above DECODE_PIXELS is decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (DCT scaling):
    a 10000x10000 photo then never exists in memory at full size."""
    if size is None or size[0] * size[1] <= DECODE_PIXELS:
        return cv2.IMREAD_COLOR
    for factor, flag in ((2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4)):
        if size[0] * size[1] / factor**2 <= DECODE_PIXELS:
            return flag
    return cv2.IMREAD_REDUCED_COLOR_8


def reduce_to(img: np.ndarray, pixels: int) -> np.ndarray:
    """The image itself when it has at most `pixels`, else resized down to that many (INTER_AREA): the
    one rule for decoding (DECODE_PIXELS) and for what the audits measure (audits.quality.AUDIT_PIXELS)."""
    h, w = img.shape[:2]
    if h * w <= pixels:
        return img
    scale = (pixels / (h * w)) ** 0.5
    return cv2.resize(img, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)


def pixel_hash(img: np.ndarray) -> str:
    """blake2b-128 of the array shape and decoded pixels (OpenCV BGR): equal for pixel-identical files
    whatever their names or encodings (the `content_hash` column everywhere)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(img.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def list_images(folder: Path) -> list[Path]:
    """Entries directly in `folder` named like images (hidden ones skipped), sorted by name. Directories,
    dangling symlinks and FIFOs named like images are listed too: `decode_image` says what they are."""
    return sorted(
        p for p in Path(folder).iterdir() if not p.name.startswith(".") and p.name.rstrip().lower().endswith(IMAGE_EXTS)
    )


def walk_images(folder: Path, exts: tuple[str, ...] = IMAGE_EXTS) -> tuple[list[Path], dict[str, int]]:
    """Entries named like images (`exts`) in `folder` and all its subfolders, sorted by their path below
    `folder`, and how many other files were skipped, per extension ("" for none).

    Why not `list_images`: photos are kept in folders of folders, and a user must hear what was left out.
    Hidden entries are skipped (not counted); symlinked folders are followed once (a link loop ends there);
    nothing is opened, so a FIFO cannot block. An entry named like an image is listed whatever it is (a
    folder, a dangling link): `decode_image` says what it is, as with `list_images`."""
    found: list[Path] = []
    skipped: dict[str, int] = {}
    _walk(Path(folder), exts, found, skipped, set())
    return sorted(found, key=lambda p: p.relative_to(folder).parts), dict(sorted(skipped.items()))


def _walk(d: Path, exts: tuple[str, ...], found: list[Path], skipped: dict[str, int], seen: set) -> None:
    """`walk_images`' search of one folder; `seen`: the folders (device, inode) already searched, so a folder
    reached twice through links is listed once, under the name met first in name order."""
    try:
        st = d.stat()
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        entries = sorted((e for e in os.scandir(d) if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:  # unreadable folder: nothing in it to list
        return
    for e in entries:
        if e.name.rstrip().lower().endswith(exts):
            found.append(d / e.name)
        elif _is_dir(e):
            _walk(d / e.name, exts, found, skipped, seen)
        else:
            ext = Path(e.name.rstrip()).suffix.lower()
            skipped[ext] = skipped.get(ext, 0) + 1


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks; a dangling one is not a folder
    except OSError:
        return False


def source_size(path: Path) -> tuple[int, int] | None:
    """(width, height) the file's header gives, before `decode_image` reduced it (None when unreadable).

    Why: coordinates found on a reduced copy of a large photo must be scaled back to the file's pixels."""
    try:
        data, _ = _read(Path(path))
    except OSError:
        return None
    return _jpeg_size(data) if data[:2] == b"\xff\xd8" else _pillow_size(data)


def full_size(path: Path, img: np.ndarray) -> tuple[int, int]:
    """(width, height) of the file's image at full resolution, oriented as `decode_image` gave `img` (EXIF
    rotation applied): what a manifest records, not the size of a copy decoded reduced (a 8000x8000 JPEG is
    decoded at 2000x2000, and its manifest said so)."""
    h, w = img.shape[:2]
    if h * w <= DECODE_PIXELS // 4:  # a reduced decode keeps more (_decode_flag): no second read of the file
        return w, h
    size = source_size(path)
    if size is None or size[0] * size[1] <= w * h:
        return w, h
    sw, sh = size
    return (sh, sw) if (sw > sh) != (w > h) else (sw, sh)


def is_constant(img: np.ndarray) -> bool:
    """True when every pixel has the same value (BRISQUE and blur measures are undefined then)."""
    return bool(img.size) and int(img.max()) == int(img.min())
