"""Finding the ImageNet weights of a backbone, offline first, never silently random.

Order: a configured folder of weight files (``weights_dir`` or ``$TRANSFER_STUDIO_WEIGHTS_DIR``; a file found there is
passed to Keras by path, because Keras deletes a cached file whose hash differs from the published one), then the Keras
cache (``$KERAS_HOME/models``), then one download attempt from Keras' own address with a short timeout. When all fail, a
``WeightsError`` names the backbone, the file and the folder to put it in, and suggests training from scratch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError, WeightsError
from core.models.backbones import BackboneSpec

WEIGHTS_DIR_ENV = "TRANSFER_STUDIO_WEIGHTS_DIR"
DOWNLOAD_TIMEOUT_S = 20.0

_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"
# Where Keras downloads each no-top file from, and the hash it checks (None: Keras checks none). Copied from
# keras/src/applications/*.py (Keras 3.15) so that our download attempt is exactly the application's own.
_SOURCES: dict[str, tuple[str, str | None]] = {
    "mobilenet_v2": (_GCS + "mobilenet_v2/", None),
    "mobilenet_v3_small": (_GCS + "mobilenet_v3/", "d3e8ec802a04aa4fc771ee12a9a9b836"),
    "mobilenet_v3_large": (_GCS + "mobilenet_v3/", "07fb09a5933dd0c8eaafa16978110389"),
    "efficientnet_b0": ("https://storage.googleapis.com/keras-applications/", "50bc09e76180e00e4465e1a485ddc09d"),
    "efficientnet_v2_b0": (_GCS + "efficientnet_v2/", "893217f2bb855e2983157299931e43ff"),
    "resnet50": (_GCS + "resnet/", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet50_v2": (_GCS + "resnet/", "fac2f116257151a9d068a22e544a4917"),
    "inception_v3": (_GCS + "inception_v3/", "bcbd6486424b2319ff4ef7d526e38f63"),
    "xception": (_GCS + "xception/", "b0042744bf5b25fce3cb969f33bebb97"),
    "vgg16": (_GCS + "vgg16/", "6d6bbae143d832006294945121d1f1fc"),
    "densenet121": (_GCS + "densenet/", "30ee3e1110167f948a6b9946edeeb738"),
    "convnext_tiny": (_GCS + "convnext/", "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
}

_DIGESTS: dict[tuple[str, int, int, str], str] = {}


@dataclass(frozen=True)
class ResolvedWeights:
    """Which weights a model is built with.

    Attributes:
        keras_weights: Value for ``keras.applications.X(weights=...)``: ``"imagenet"``, a file path, or None.
        description: For people and the run record, e.g. ``ImageNet (Keras cache: /root/.keras/models/x.h5)``.
        fingerprint: Short stable id for cache keys: ``imagenet-<sha256[:12] of the file>`` or ``none``.
    """

    keras_weights: str | None
    description: str
    fingerprint: str


NO_WEIGHTS = ResolvedWeights(None, "none (random init)", "none")


def weights_origin(spec: BackboneSpec, image_size: int) -> tuple[str, str | None]:
    """The URL Keras downloads ``spec``'s no-top weight file from, and the hash Keras checks (or None)."""
    base, file_hash = _SOURCES[spec.name]
    return base + spec.weights_file(image_size), file_hash


def configured_weights_dir(weights_dir: str | os.PathLike | None = None) -> Path | None:
    """The offline weights folder: ``weights_dir`` if given, else ``$TRANSFER_STUDIO_WEIGHTS_DIR``, else None."""
    value = weights_dir if weights_dir is not None else os.environ.get(WEIGHTS_DIR_ENV)
    return Path(value).expanduser() if value else None


def keras_cache_dir() -> Path:
    """The folder Keras reads and writes application weights in (``$KERAS_HOME/models``).

    KERAS_HOME is read by Keras when it is first imported, so ask Keras rather than the environment; like Keras'
    ``get_file``, fall back to ``/tmp/.keras`` when the home folder is not writable.
    """
    try:
        from keras.src.backend.config import keras_home

        home = Path(os.path.expanduser(keras_home()))
    except ImportError:  # a future Keras without the private accessor
        home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    if home.exists() and not os.access(home, os.W_OK):
        home = Path("/tmp/.keras")
    return home / "models"


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of ``path`` with ``algorithm`` (``sha256`` or ``md5``), memoised per (path, size, mtime)."""
    key = (*_file_key(path), algorithm)
    if key not in _DIGESTS:
        with open(path, "rb") as handle:
            _DIGESTS[key] = hashlib.file_digest(handle, algorithm).hexdigest()
    return _DIGESTS[key]


def fingerprint_file(path: Path) -> str:
    """``imagenet-<first 12 hex digits of the file's sha256>``."""
    return "imagenet-" + _file_digest(path, "sha256")[:12]


def _matches_published_hash(path: Path, file_hash: str | None) -> bool:
    if file_hash is None:
        return True
    return _file_digest(path, "sha256" if len(file_hash) == 64 else "md5") == file_hash


def _from_folder(spec: BackboneSpec, image_size: int, folder: Path | None) -> ResolvedWeights | None:
    if folder is None:
        return None
    path = folder / spec.weights_file(image_size)
    if not path.is_file():
        return None
    return ResolvedWeights(str(path), f"ImageNet (file {path})", fingerprint_file(path))


def _from_cache(spec: BackboneSpec, image_size: int) -> ResolvedWeights | None:
    path = keras_cache_dir() / spec.weights_file(image_size)
    if not path.is_file():
        return None
    if _matches_published_hash(path, weights_origin(spec, image_size)[1]):
        return ResolvedWeights("imagenet", f"ImageNet (Keras cache: {path})", fingerprint_file(path))
    # Asked for "imagenet", Keras would delete this file and try to download it again; by path it loads as is.
    return ResolvedWeights(str(path), f"ImageNet (Keras cache, hash differs from Keras' published one: {path})",
                           fingerprint_file(path))


def _download(spec: BackboneSpec, image_size: int) -> Path:
    """Fetch the no-top file into the Keras cache, as ``keras.utils.get_file`` would, with a timeout of its own.

    ``get_file`` has no timeout and ``socket.setdefaulttimeout`` would change every socket of the server (other
    sessions' threads), so the file is fetched here with a per-connection timeout and checked against the hash
    Keras publishes before it is renamed into place.
    """
    origin, file_hash = weights_origin(spec, image_size)
    target = keras_cache_dir() / spec.weights_file(image_size)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(origin, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
        if not _matches_published_hash(partial, file_hash):
            raise ValueError(f"the downloaded file's hash differs from the published {file_hash}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _missing_error(spec: BackboneSpec, image_size: int, folder: Path | None, reason: str) -> WeightsError:
    file_name = spec.weights_file(image_size)
    target = folder if folder is not None else keras_cache_dir()
    return WeightsError(
        f"No ImageNet weights for {spec.display_name} ({spec.name}) at {image_size} px: the file {file_name} "
        f"is not in {target} and could not be downloaded ({reason}). Put {file_name} into {target} "
        f"(or set {WEIGHTS_DIR_ENV} to a folder holding it), or choose the from-scratch strategy "
        f"(weights 'none'), which needs no download but learns far less from small datasets.")


def resolve_weights(spec: BackboneSpec, image_size: int, weights: str = "imagenet",
                    weights_dir: str | os.PathLike | None = None) -> ResolvedWeights:
    """Decides which weights ``spec`` is built with, downloading through Keras only as the last resort.

    Args:
        spec: The backbone.
        image_size: Input size in pixels (MobileNetV2 has one weight file per size).
        weights: ``"imagenet"`` or ``"none"``.
        weights_dir: Offline folder of weight files; defaults to ``$TRANSFER_STUDIO_WEIGHTS_DIR``.

    Returns:
        The weights to pass to Keras, with a description and a fingerprint for cache keys.

    Raises:
        ConfigError: ``weights`` is neither ``imagenet`` nor ``none``.
        WeightsError: ImageNet weights were asked for and can be neither found nor downloaded.
    """
    if weights == "none":
        return NO_WEIGHTS
    if weights != "imagenet":
        raise ConfigError(f"weights={weights!r} is not supported; use 'imagenet' or 'none'.")
    folder = configured_weights_dir(weights_dir)
    found = _from_folder(spec, image_size, folder) or _from_cache(spec, image_size)
    if found is not None:
        return found
    try:
        path = _download(spec, image_size)
    except Exception as exc:  # get_file raises a bare Exception for network errors, ValueError for bad hashes
        raise _missing_error(spec, image_size, folder, f"{type(exc).__name__}: {exc}") from exc
    return ResolvedWeights("imagenet", f"ImageNet (downloaded by Keras to {path})", fingerprint_file(path))


def weights_available(spec: BackboneSpec, image_size: int, weights_dir: str | os.PathLike | None = None) -> bool:
    """True when ImageNet weights for ``spec`` at ``image_size`` are on disk (configured folder or Keras cache).

    Never downloads; a cached file whose hash differs still counts, since ``resolve_weights`` passes it by path.
    """
    file_name = spec.weights_file(image_size)
    folder = configured_weights_dir(weights_dir)
    return bool((folder is not None and (folder / file_name).is_file()) or (keras_cache_dir() / file_name).is_file())
