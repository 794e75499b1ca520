"""Classify images with this exported Transfer Studio model.

Needs Python 3.10+, pillow and numpy, and either ai-edge-litert (fast, small: runs model.tflite with
XNNPACK on every core) or keras 3 with its TensorFlow backend (runs model.keras):

    pip install ai-edge-litert pillow numpy        # or: pip install keras tensorflow pillow numpy
    python predict.py photo1.jpg photo2.png [--top-k 3] [--json] [--runtime auto|litert|keras]

It says on stderr which runtime answered. The files next to this script: model.keras and model.tflite
(the same model: raw RGB pixels 0..255 in, probabilities out), labels.json (class names in output order)
and config.json (image_size, resize mode and max_side).
The image preparation below is a copy of the app's ``core.data.images`` (the app's tests check
that both give identical pixels), so this script predicts what the app predicted.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
PAD_COLOR = (0, 0, 0)
JPEG_QUALITY = 90


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: transparency composited on white, 16-bit, 32-bit and float scaled to 0..255."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        gray = np.clip(pixels * (255.0 / full_scale(image.mode, pixels)), 0, 255)
        return Image.fromarray(np.round(gray).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def full_scale(mode: str, pixels: np.ndarray) -> float:
    """White for a single-channel image: the smallest usual range (1.0 float, 255, 65,535) holding its peak."""
    if mode.startswith("I;16"):
        return 65535.0
    peak = float(np.max(pixels)) if pixels.size else 0.0
    ranges = (1.0, 255.0, 65535.0) if mode == "F" else (255.0, 65535.0)
    return next((top for top in ranges if peak <= top), peak)


def load_image(path) -> Image.Image:
    """Open an image file upright (EXIF orientation applied), first frame of an animation, RGB."""
    image = Image.open(path)
    image.load()
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not cost the picture
        pass
    return to_rgb(image)


def as_stored(image: Image.Image, max_side: int = 512) -> Image.Image:
    """What the app stored for an image when it trained: longest side capped at max_side, JPEG re-encoded."""
    image = image.copy()
    image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    stored = Image.open(io.BytesIO(buffer.getvalue()))
    stored.load()
    return stored


def prepare_image(image: Image.Image, image_size: int, resize: str = "squash") -> np.ndarray:
    """float32 (image_size, image_size, 3), values 0..255; resize is squash, crop, pad (black) or crop-lanczos."""
    image = to_rgb(image)
    size = (int(image_size), int(image_size))
    if resize == "squash":
        out = image.resize(size, Image.Resampling.BILINEAR)
    elif resize == "crop":
        out = ImageOps.fit(image, size, Image.Resampling.BILINEAR)
    elif resize == "crop-lanczos":  # Teachable Machine's preparation
        out = ImageOps.fit(image, size, Image.Resampling.LANCZOS)
    elif resize == "pad":
        out = ImageOps.pad(image, size, Image.Resampling.BILINEAR, color=PAD_COLOR)
    else:
        raise ValueError(f"Unknown resize mode {resize!r}; expected squash, crop, pad or crop-lanczos.")
    return np.asarray(out, dtype=np.float32)


class _LiteRTModel:
    """model.tflite run by the LiteRT interpreter with XNNPACK on every core."""

    name = "LiteRT (model.tflite)"

    def __init__(self, path: Path):
        import os

        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] != self.batch:
            self.interpreter.resize_tensor_input(self.input, list(batch.shape))
            self.interpreter.allocate_tensors()
            self.batch = batch.shape[0]
        self.interpreter.set_tensor(self.input, batch.astype(np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


class _KerasModel:
    name = "Keras (model.keras)"

    def __init__(self, path: Path):
        import keras  # imported here so the preparation functions above load without TensorFlow

        self.model = keras.saving.load_model(path, safe_mode=True)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(batch, training=False))


def load_model(folder: Path = HERE, runtime: str = "auto"):
    """model.tflite on LiteRT when asked or when both are there ("auto"), else model.keras on Keras."""
    tflite = folder / "model.tflite"
    if runtime in ("auto", "litert") and tflite.is_file():
        try:
            return _LiteRTModel(tflite)
        except ImportError:
            if runtime == "litert":
                raise SystemExit("error: --runtime litert needs ai-edge-litert: pip install ai-edge-litert") from None
    elif runtime == "litert":
        raise SystemExit(f"error: --runtime litert needs {tflite}; this bundle has only model.keras")
    return _KerasModel(folder / "model.keras")


def predict(paths, top_k: int = 3, folder: Path = HERE, batch_size: int = 32, runtime: str = "auto",
            model=None) -> list[dict]:
    """One dict per image: file, label, probability, top_k [[label, probability], ...]."""
    model = model or load_model(folder, runtime)
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        max_side = config.get("max_side")  # null for a model trained elsewhere: it saw the originals
        batch = np.stack([prepare_image(as_stored(load_image(p), int(max_side)) if max_side else load_image(p),
                                        config["image_size"], config.get("resize", "squash")) for p in chunk])
        probabilities = model(batch)
        for path, probs in zip(chunk, probabilities, strict=True):
            order = np.argsort(-probs, kind="stable")[:max(1, top_k)]
            results.append({
                "file": str(path),
                "label": labels[int(order[0])],
                "probability": float(probs[order[0]]),
                "top_k": [[labels[int(i)], float(probs[i])] for i in order],
            })
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Classify images with the exported model.")
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--top-k", type=int, default=3, help="how many classes to list per image")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--runtime", choices=("auto", "litert", "keras"), default="auto",
                        help="auto: LiteRT when ai-edge-litert is installed, else Keras")
    args = parser.parse_args(argv)
    model = load_model(HERE, args.runtime)
    print(f"runtime: {model.name}", file=sys.stderr)
    results = predict(args.images, top_k=args.top_k, model=model)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            others = ", ".join(f"{label} {prob:.1%}" for label, prob in result["top_k"][1:])
            print(f"{result['file']}: {result['label']} ({result['probability']:.1%})"
                  + (f"  [{others}]" if others else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
