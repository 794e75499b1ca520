"""LiteRT: Keras models converted once to TFLite flatbuffers and run by ``ai_edge_litert`` with XNNPACK.

Converted frozen feature extractors live in one folder shared by every workspace and dataset on the
machine (``$TRANSFER_STUDIO_LITERT_CACHE``, default ``~/.cache/transfer-studio/litert``), one file per
(backbone, input size, weights fingerprint, TensorFlow and LiteRT versions). A file is written to a
temporary name and renamed into place, and a conversion holds an exclusive lock on its key, so several
processes can share the folder: a second process that finds a conversion under way does not wait for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from core.errors import ExportError

LITERT_CACHE_ENV = "TRANSFER_STUDIO_LITERT_CACHE"
FORMAT_VERSION = 1
# The fast path must give what Keras gives: largest difference in the embeddings, relative to their largest value.
PARITY_TOLERANCE = 1e-3


def litert_cache_dir() -> Path:
    """The machine-wide folder of converted models (created on first use)."""
    value = os.environ.get(LITERT_CACHE_ENV)
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "transfer-studio" / "litert"


def cpu_threads() -> int:
    """Cores this process may run on (what XNNPACK is given)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def litert_available() -> bool:
    """True when the ``ai-edge-litert`` interpreter can be imported."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def extractor_key(backbone: str, image_size: int, weights_fingerprint: str) -> str:
    """File stem of the converted extractor of ``backbone`` at ``image_size`` with those weights."""
    text = (f"{backbone}|{image_size}|{weights_fingerprint}|tf-{_version('tensorflow')}|"
            f"keras-{_version('keras')}|litert-{_version('ai-edge-litert')}|v{FORMAT_VERSION}")
    return f"{backbone}-{image_size}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def weights_digest(model) -> str:
    """``weights-<sha256[:12]>`` of a model's weight values (for random or otherwise unnamed weights)."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight), dtype=np.float32).tobytes())
    return "weights-" + digest.hexdigest()[:12]


class ConvertedStore:
    """The converted-model folder: ``<key>.tflite``, ``<key>.json`` (facts), ``<key>.failed.json``, locks."""

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) if folder is not None else litert_cache_dir()

    def model_path(self, key: str) -> Path:
        return self.folder / f"{key}.tflite"

    def has(self, key: str) -> bool:
        return self.model_path(key).is_file()

    def load(self, key: str) -> bytes | None:
        try:
            return self.model_path(key).read_bytes()
        except OSError:
            return None

    def facts(self, key: str) -> dict:
        return _read_json(self.folder / f"{key}.json")

    def failure(self, key: str) -> str | None:
        """Why converting ``key`` failed before (it is not retried for these versions), or None."""
        return _read_json(self.folder / f"{key}.failed.json").get("error")

    def save(self, key: str, content: bytes, facts: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.model_path(key), content)
        _atomic_write(self.folder / f"{key}.json", json.dumps({**facts, "key": key}, indent=2).encode())

    def save_failure(self, key: str, error: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.folder / f"{key}.failed.json", json.dumps({"key": key, "error": error}).encode())

    def speeds(self) -> dict:
        """``{"<backbone>@<size>": {"keras": images/s, "litert": images/s, "conversion_s": s}}`` measured here."""
        return _read_json(self.folder / "speeds.json")

    def record_speed(self, backbone: str, image_size: int, **figures: float) -> None:
        """Merge measured figures (``keras=``, ``litert=``, ``conversion_s=``) into the machine's speeds."""
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "speeds.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            speeds = self.speeds()
            entry = speeds.setdefault(f"{backbone}@{image_size}", {})
            entry.update({name: round(float(value), 3) for name, value in figures.items() if value})
            _atomic_write(self.folder / "speeds.json", json.dumps(speeds, indent=2, sort_keys=True).encode())

    @contextlib.contextmanager
    def conversion_lock(self, key: str):
        """Yields True while this process holds ``key``'s conversion lock, False when another process has it."""
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{key}.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _atomic_write(path: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class LiteRTModel:
    """A TFLite model run by the LiteRT interpreter (XNNPACK on ``threads`` cores), batches of any size.

    Quacks like the Keras calls the project makes: ``predict_on_batch(images)`` and ``output_shape``.
    """

    runtime = "litert"

    def __init__(self, content: bytes, *, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.threads = threads or cpu_threads()
        self._interpreter = Interpreter(model_content=content, num_threads=self.threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self.input_shape = (None, *[int(d) for d in self._input["shape"][1:]])
        self.output_shape = (None, *[int(d) for d in self._output["shape"][1:]])
        self._batch = None
        # An interpreter is not thread-safe; a predictor may be shared by several app sessions.
        self._lock = threading.Lock()

    def predict_on_batch(self, images) -> np.ndarray:
        batch = np.ascontiguousarray(images, dtype=np.float32)
        with self._lock:
            if batch.shape[0] != self._batch:
                self._interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
                self._interpreter.allocate_tensors()
                self._batch = batch.shape[0]
            self._interpreter.set_tensor(self._input["index"], batch)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output["index"]).copy()

    __call__ = predict_on_batch


def convert_model(model) -> tuple[bytes, float]:
    """TFLite bytes of a Keras model and the seconds the conversion took (ExportError when it fails)."""
    from core.models.conversion import convert_to_tflite

    started = time.perf_counter()
    content = convert_to_tflite(model)
    return content, time.perf_counter() - started


def check_parity(keras_model, fast: LiteRTModel, *, seed: int = 0) -> float:
    """Largest difference between Keras and LiteRT outputs on two random images, relative to Keras' largest.

    Raises:
        ExportError: the difference is over ``PARITY_TOLERANCE``.
    """
    size = keras_model.input_shape[1:]
    images = np.random.default_rng(seed).uniform(0, 255, (2, *size)).astype(np.float32)
    expected = np.asarray(keras_model.predict_on_batch(images), dtype=np.float32)
    difference = float(np.abs(fast.predict_on_batch(images) - expected).max())
    relative = difference / max(float(np.abs(expected).max()), 1e-6)
    if not np.isfinite(relative) or relative > PARITY_TOLERANCE:
        raise ExportError(f"LiteRT output differs from Keras by {relative:.2e} of its scale (tolerance "
                          f"{PARITY_TOLERANCE:.0e}); the Keras path is used instead.")
    return relative


def convert_and_store(keras_model, key: str, store: ConvertedStore | None = None, **facts) -> tuple[bytes, float]:
    """Convert ``keras_model``, check it against Keras and keep it under ``key``; returns (bytes, seconds).

    A failure is recorded (not retried for these versions) and raised as ExportError.
    """
    store = store or ConvertedStore()
    try:
        content, seconds = convert_model(keras_model)
        fast = LiteRTModel(content)
        relative = check_parity(keras_model, fast)
    except Exception as exc:  # converter, interpreter or delegate failures all mean "use Keras"
        message = " ".join(str(exc).split())[:300] or type(exc).__name__
        store.save_failure(key, message)
        raise ExportError(f"LiteRT conversion failed: {message}") from exc
    store.save(key, content, {**facts, "conversion_s": round(seconds, 3), "parity_relative": relative,
                              "created_at": time.time()})
    return content, seconds
