"""The frozen feature extractor on the cheaper path: LiteRT (converted once per machine) or Keras.

``plan_extraction`` decides, without building anything, which runtime a pass over ``num_images`` images
will use: LiteRT when this machine already has the converted model; otherwise convert now only when the
conversion pays for itself on this pass, else Keras now while a low-priority background process makes the
conversion for next time (so a cold first run is never slower than Keras alone). ``FastExtractor`` carries
the plan out lazily (nothing is converted when the embeddings turn out to be cached) and falls back to
Keras when conversion, the parity check or the delegate fails.

``TRANSFER_STUDIO_LITERT``: ``auto`` (default), ``off`` (always Keras) or ``always`` (convert whenever
missing). ``TRANSFER_STUDIO_LITERT_BACKGROUND=0`` turns the background conversion off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

from core.models.litert import (
    ConvertedStore,
    LiteRTModel,
    convert_and_store,
    cpu_threads,
    extractor_key,
    litert_available,
)

MODE_ENV = "TRANSFER_STUDIO_LITERT"
BACKGROUND_ENV = "TRANSFER_STUDIO_LITERT_BACKGROUND"
MODES = ("auto", "off", "always")
# Convert now only when conversion + LiteRT pass is clearly cheaper than the Keras pass: estimates are rough.
CONVERT_MARGIN = 0.8
# Without measurements here: LiteRT/Keras speed ratio and Keras images/s at 224 px per million parameters.
DEFAULT_SPEEDUP = 2.4
_KERAS_SPEED_AT_2M = 130.0


@dataclass(frozen=True)
class ExtractionPlan:
    """Which runtime a pass will use and why.

    Attributes:
        runtime: ``litert`` or ``keras``.
        convert_now: convert before the pass (LiteRT then runs it).
        background: make the conversion for next time in a background process.
        key: the converted model's key in the machine-wide store (None: unknown weights).
        reason: for people: why this runtime.
        conversion_estimate_s: seconds the conversion is expected to take when ``convert_now``.
    """

    runtime: str
    convert_now: bool
    background: bool
    key: str | None
    reason: str
    conversion_estimate_s: float = 0.0


def litert_mode() -> str:
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    return mode if mode in MODES else "auto"


def _estimates(store: ConvertedStore, backbone: str, image_size: int) -> tuple[float, float, float]:
    """(Keras images/s, LiteRT images/s, conversion seconds) measured here before, else rough defaults."""
    from core.models.backbones import BACKBONES

    measured = store.speeds().get(f"{backbone}@{image_size}", {})
    spec = BACKBONES.get(backbone)
    params = (spec.params / 1e6) if spec else 5.0
    keras_speed = measured.get("keras") or _KERAS_SPEED_AT_2M * (2.3 / params) ** 0.6 * (224 / image_size) ** 2
    litert_speed = measured.get("litert") or keras_speed * DEFAULT_SPEEDUP
    conversion = measured.get("conversion_s") or 8.0 + 0.5 * params
    return float(keras_speed), float(litert_speed), float(conversion)


def _gpu_present() -> bool:
    """A GPU TensorFlow can use (asked only when TensorFlow is loaded already: a page must stay light)."""
    tf = sys.modules.get("tensorflow")
    try:
        return bool(tf is not None and tf.config.list_physical_devices("GPU"))
    except Exception:  # a half-initialised TensorFlow: no GPU worth planning for
        return False


def plan_extraction(backbone: str, image_size: int, weights_fingerprint: str | None, num_images: int, *,
                    store: ConvertedStore | None = None, mode: str | None = None) -> ExtractionPlan:
    """The runtime for a pass of ``num_images`` images through ``backbone``'s frozen extractor."""
    store = store or ConvertedStore()
    mode = mode or litert_mode()
    if mode == "off":
        return ExtractionPlan("keras", False, False, None, f"LiteRT is turned off ({MODE_ENV}=off)")
    if not litert_available():
        return ExtractionPlan("keras", False, False, None, "ai-edge-litert is not installed")
    if _gpu_present():
        return ExtractionPlan("keras", False, False, None, "a GPU is here: Keras runs on it")
    key = extractor_key(backbone, image_size, weights_fingerprint) if weights_fingerprint else None
    measured = store.speeds().get(f"{backbone}@{image_size}", {})
    if measured.get("keras") and measured.get("litert") and measured["keras"] >= measured["litert"]:
        # Measured on this machine: XNNPACK wins on the mobile backbones (2 to 3x) but not on every large one
        # (VGG16 0.76x, ResNet50 0.98x of Keras here).
        return ExtractionPlan("keras", False, False, key, f"Keras measured faster here for this backbone "
                              f"({measured['keras']:.0f} against {measured['litert']:.0f} images/s on LiteRT)")
    if key and store.has(key):
        return ExtractionPlan("litert", False, False, key, "converted earlier on this machine")
    failure = store.failure(key) if key else None
    if failure:
        return ExtractionPlan("keras", False, False, key, f"LiteRT conversion failed before: {failure}")
    keras_speed, litert_speed, conversion = _estimates(store, backbone, image_size)
    keras_s = num_images / keras_speed
    litert_s = conversion + num_images / litert_speed
    # Only a registry backbone can be rebuilt by the background process (a base model is known to its run only).
    can_reproduce = bool(weights_fingerprint) and not weights_fingerprint.startswith("weights-") \
        and backbone in _registry()
    if key and mode == "always":
        return ExtractionPlan("litert", True, False, key, f"converting first ({MODE_ENV}=always)", conversion)
    if key and litert_s < CONVERT_MARGIN * keras_s:
        return ExtractionPlan("litert", True, False, key, f"converting now pays off on {num_images} images "
                              f"(about {litert_s:.0f} s against {keras_s:.0f} s with Keras)", conversion)
    return ExtractionPlan("keras", False, can_reproduce and key is not None, key,
                          f"nothing converted yet and {num_images} images are quicker on Keras "
                          f"({keras_s:.0f} s against {litert_s:.0f} s with a conversion first)")


def _registry() -> dict:
    from core.models.backbones import BACKBONES

    return BACKBONES


class LaterModel:
    """A Keras extractor another thread is still building: ``resolve()`` waits for it and returns it.

    Given to ``FastExtractor`` in its place, so a LiteRT pass starts at once and the Keras model is waited for
    only when Keras must run (no converted model, a conversion, a fallback).
    """

    def __init__(self, resolve):
        self._resolve, self._model = resolve, None

    def resolve(self):
        """The model (made once: a new Keras model per call would trace its predict function again each time)."""
        if self._model is None:
            self._model = self._resolve()
        return self._model


def resolved(model):
    """``model`` itself, or the model a ``LaterModel`` stands for (waiting for it)."""
    return model.resolve() if isinstance(model, LaterModel) else model


class FastExtractor:
    """A frozen extractor (raw pixels in, pooled embedding out) on the runtime its plan chose.

    Has Keras' ``predict_on_batch`` and ``output_shape``, so the embedding cache takes it like a model.
    After the first batch, ``runtime``, ``conversion_s`` and ``reason`` say what really ran.
    """

    def __init__(self, keras_extractor, plan: ExtractionPlan, *, backbone: str, image_size: int,
                 weights_fingerprint: str | None, store: ConvertedStore | None = None):
        self._keras = keras_extractor  # a Keras model, or a LaterModel still being built
        self.plan = plan
        self.backbone, self.image_size, self.weights_fingerprint = backbone, image_size, weights_fingerprint
        self.store = store or ConvertedStore()
        self.runtime = plan.runtime
        self.reason = plan.reason
        self.conversion_s = 0.0
        self.threads = None
        self._runner = None

    @property
    def keras_model(self):
        """The Keras extractor (waited for when it is still being built)."""
        return resolved(self._keras)

    @property
    def output_shape(self) -> tuple:
        """The embedding's shape, ``(None, D)``: from the runtime that will run (a Keras model still being built
        is waited for only when Keras runs the pass)."""
        if self._runner is None:
            self._start()
        return tuple(self._runner.output_shape)

    def _start(self) -> None:
        if self.plan.runtime == "litert":
            try:
                self._runner = self._litert_runner()
            except Exception as exc:  # conversion, interpreter or delegate failure: Keras does the work
                self._fall_back(exc)
        elif self.plan.background:
            spawn_background_conversion(self.backbone, self.image_size, self.weights_fingerprint, self.store)
        if self._runner is None:
            self._runner, self.runtime = self.keras_model, "keras"
        elif self.runtime == "litert":  # (after a fallback Keras is in place already)
            self.threads = self._runner.threads

    def _litert_runner(self) -> LiteRTModel | None:
        if not self.plan.convert_now:
            content = self.store.load(self.plan.key)
            if content is None:
                raise OSError(f"{self.store.model_path(self.plan.key)} could not be read")
            return LiteRTModel(content)
        with self.store.conversion_lock(self.plan.key) as mine:
            if not mine:
                self.reason = "another process is converting this model; Keras runs this pass"
                return None
            started = time.perf_counter()
            content, _ = convert_and_store(self.keras_model, self.plan.key, self.store, backbone=self.backbone,
                                           image_size=self.image_size, weights=self.weights_fingerprint)
            self.conversion_s = round(time.perf_counter() - started, 3)
            self.store.record_speed(self.backbone, self.image_size, conversion_s=self.conversion_s)
            return LiteRTModel(content)

    def _fall_back(self, exc: Exception) -> None:
        self.reason = f"LiteRT failed ({' '.join(str(exc).split())[:200]}); Keras runs instead"
        self._runner, self.runtime = self.keras_model, "keras"

    def predict_on_batch(self, images):
        import numpy as np

        if self._runner is None:
            self._start()
        if self.runtime == "litert":
            try:
                return self._runner.predict_on_batch(images)
            except Exception as exc:  # a delegate failing at run time: finish on Keras
                self._fall_back(exc)
        return np.asarray(self.keras_model.predict_on_batch(images))

    def describe(self) -> dict:
        """What ran: runtime, reason, conversion seconds, threads, converted-model key."""
        return {"runtime": self.runtime, "reason": self.reason, "conversion_s": self.conversion_s,
                "threads": self.threads, "key": self.plan.key}


def fast_feature_extractor(keras_extractor, *, backbone: str, image_size: int, weights_fingerprint: str | None,
                           num_images: int, store: ConvertedStore | None = None) -> FastExtractor:
    """Wrap a Keras extractor in the runtime ``plan_extraction`` picks for ``num_images`` images.

    Random or unnamed weights (fingerprint ``none``) are keyed by a digest of the model's weight values.
    """
    from core.models.litert import weights_digest

    store = store or ConvertedStore()
    if weights_fingerprint in (None, "none"):
        keras_extractor = resolved(keras_extractor)
        weights_fingerprint = weights_digest(keras_extractor)
    plan = plan_extraction(backbone, image_size, weights_fingerprint, num_images, store=store)
    return FastExtractor(keras_extractor, plan, backbone=backbone, image_size=image_size,
                         weights_fingerprint=weights_fingerprint, store=store)


def spawn_background_conversion(backbone: str, image_size: int, weights_fingerprint: str,
                                store: ConvertedStore | None = None, *,
                                after_this_process: bool = True) -> subprocess.Popen | None:
    """Start ``python -m core.models.extractors`` at the lowest CPU priority to convert for next time, once this process
    has ended (``wait_for_parent``); None if not."""
    store = store or ConvertedStore()
    if os.environ.get(BACKGROUND_ENV, "1") == "0" or store.has(extractor_key(backbone, image_size,
                                                                              weights_fingerprint)):
        return None
    store.folder.mkdir(parents=True, exist_ok=True)
    log = open(store.folder / "background.log", "ab")  # noqa: SIM115  (the child keeps it open)
    command = [sys.executable, "-m", "core.models.extractors", backbone, str(image_size), weights_fingerprint]
    if after_this_process:
        command.append(str(os.getpid()))
    env = {**os.environ, "TRANSFER_STUDIO_LITERT_CACHE": str(store.folder)}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project root
    try:
        return subprocess.Popen(command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)  # the child lowers its own priority first
    except OSError:
        return None
    finally:
        log.close()


def _convert_in_background(backbone: str, image_size: int, weights_fingerprint: str) -> int:
    """Child process: rebuild the frozen extractor with the same ImageNet weights, convert and store it."""
    from core.models.backbones import get_backbone
    from core.models.classifier import build_classifier, feature_extractor
    from core.models.weights import resolve_weights

    store = ConvertedStore()
    key = extractor_key(backbone, image_size, weights_fingerprint)
    spec = get_backbone(backbone)
    weights = resolve_weights(spec, image_size, "imagenet")
    if weights.fingerprint != weights_fingerprint:
        print(f"{backbone}@{image_size}: weights changed ({weights.fingerprint}); not converting", file=sys.stderr)
        return 1
    with store.conversion_lock(key) as mine:
        if not mine or store.has(key):
            return 0
        model = feature_extractor(build_classifier(spec, image_size=image_size, num_classes=2, weights=weights))
        _, seconds = convert_and_store(model, key, store, backbone=backbone, image_size=image_size,
                                       weights=weights_fingerprint, background=True)
        store.record_speed(backbone, image_size, conversion_s=round(seconds, 3))
    print(f"{backbone}@{image_size}: converted in {seconds:.1f} s (threads {cpu_threads()})", file=sys.stderr)
    return 0


PARENT_WAIT_S = 120.0


def wait_for_parent(pid: int, *, timeout: float = PARENT_WAIT_S, poll: float = 0.5) -> bool:
    """Wait until process ``pid`` (the run that started this conversion) has ended, at most ``timeout`` seconds.

    Even at the lowest priority a conversion beside the run that started it takes what that run leaves idle on a
    2-core machine (the moments one core waits, memory bandwidth, the page cache for importing TensorFlow), so it
    starts once that run is over; a process that lives on (a server) gets its conversion after ``timeout``.
    True when the parent ended.
    """
    deadline = time.monotonic() + timeout
    while os.getppid() == pid:  # once the parent has ended this process is handed to another (init or a reaper)
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


if __name__ == "__main__":
    os.nice(19)  # never take CPU from the work a person is waiting for
    if len(sys.argv) > 4:
        wait_for_parent(int(sys.argv[4]))
    sys.exit(_convert_in_background(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
