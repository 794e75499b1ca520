"""Reference outputs of Teachable Machine exports from their own runtimes, for tests/core/test_teachable*.py.

Pixels are prepared exactly as Teachable Machine's Keras sample code does it: ``Image.open(path).convert("RGB")``,
``ImageOps.fit(image, (224, 224), Image.Resampling.LANCZOS)``, then ``x / 127.5 - 1``.

- ``keras H5 IMAGE...``: runs ``keras_model.h5`` with ``tf-keras`` (Keras 2, a test-only dependency) and prints
  one JSON object: the probabilities and the Keras versions seen. It runs in its own interpreter, so ``tf-keras``
  is never imported into the app's (or the tests') process.
- ``tfjs MODEL_DIR OUT_JSON ZIP MEMBER...``: runs ``model.json`` with TensorFlow.js under node (``npm install
  @tensorflow/tfjs@4.22.0`` in a folder named by ``$TFJS_NODE_MODULES``, its ``node_modules``) on photos inside a
  zip and writes the reference JSON that the tests read (file names, their sha256, the probabilities).
  This is how ``tests/data/teachable/leaves_tfjs_reference.json`` was made:

      TFJS_NODE_MODULES=/tmp/tfjs/node_modules .venv/bin/python tests/teachable_reference.py tfjs \\
          ../shared/models/teachable_machine/leaves_tfjs tests/data/teachable/leaves_tfjs_reference.json \\
          ../shared/data/hymenoptera.zip $(MEMBERS)

  where MEMBERS are the 26 ``zip_member`` names listed in that file (every 6th validation photo, in name order,
  without an EXIF orientation).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "teachable_tfjs_reference.cjs"
REFERENCE_PHOTOS = (  # real photos without an EXIF orientation, from ../shared/data/hymenoptera.zip
    "val/ants/10308379_1b6c72e180.jpg", "val/ants/1053149811_f62a3410d3.jpg", "val/ants/1073564163_225a64f170.jpg",
    "val/bees/1032546534_06907fe3b3.jpg", "val/bees/10870992_eebeeb3a12.jpg", "val/bees/1181173278_23c36fac71.jpg",
)


def teachable_pixels(source, size: int = 224) -> np.ndarray:
    """uint8 (size, size, 3): Teachable Machine's sample code's crop and resize of an image file or bytes."""
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source).convert("RGB")
    return np.asarray(ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def keras_reference(h5_path: str, images: list[str]) -> dict:
    import keras
    import tensorflow as tf
    import tf_keras

    model = tf_keras.models.load_model(h5_path, compile=False)
    batch = np.stack([teachable_pixels(path) for path in images]).astype(np.float32) / 127.5 - 1
    probabilities = model.predict(batch, verbose=0)
    return {"probabilities": probabilities.tolist(), "tf_keras": tf_keras.__version__,
            "keras": keras.__version__, "tf.keras": tf.keras.__version__}


def tfjs_reference(model_dir: Path, zip_path: Path, members: list[str]) -> dict:
    with zipfile.ZipFile(zip_path) as archive:
        blobs = [archive.read(name) for name in members]
    pixels = np.stack([teachable_pixels(data) for data in blobs])
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "pixels.bin"
        raw.write_bytes(pixels.tobytes())
        env = {**os.environ, "NODE_PATH": os.environ["TFJS_NODE_MODULES"]}
        done = subprocess.run(["node", str(NODE_SCRIPT), str(model_dir / "model.json"),
                               str(model_dir / "weights.bin"), str(raw), str(len(blobs)), str(pixels.shape[1])],
                              capture_output=True, text=True, env=env, check=True, timeout=600)
    output = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "made_by": "tests/teachable_reference.py tfjs (TensorFlow.js under node)",
        "runtime": {"tfjs": output["tfjs"], "backend": output["backend"]},
        "preparation": "Image.open().convert('RGB'); ImageOps.fit((224, 224), LANCZOS); x / 127.5 - 1",
        "images": [{"zip_member": name, "sha256": hashlib.sha256(data).hexdigest()}
                   for name, data in zip(members, blobs, strict=True)],
        "probabilities": output["probabilities"],
    }


def main(argv: list[str]) -> int:
    if argv[0] == "keras":
        print(json.dumps(keras_reference(argv[1], argv[2:])))
        return 0
    if argv[0] == "tfjs":
        reference = tfjs_reference(Path(argv[1]), Path(argv[3]), argv[4:] or list(REFERENCE_PHOTOS))
        Path(argv[2]).write_text(json.dumps(reference, indent=1) + "\n", encoding="utf-8")
        return 0
    raise SystemExit(f"unknown mode {argv[0]!r}; use keras or tfjs")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
