// Runs a Teachable Machine TensorFlow.js export under node on prepared pixels; prints one JSON line.
// Usage: NODE_PATH=<folder>/node_modules node teachable_tfjs_reference.cjs model.json weights.bin pixels.bin N SIZE
// pixels.bin holds N * SIZE * SIZE * 3 uint8 RGB values (see tests/teachable_reference.py).
const fs = require("fs");
const tf = require("@tensorflow/tfjs");

async function main() {
  const [modelPath, weightsPath, pixelsPath, count, size] = process.argv.slice(2);
  const model = JSON.parse(fs.readFileSync(modelPath, "utf-8"));
  const weights = fs.readFileSync(weightsPath);
  const artifacts = {
    modelTopology: model.modelTopology,
    weightSpecs: model.weightsManifest.flatMap((group) => group.weights),
    weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
  };
  const layers = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  const pixels = fs.readFileSync(pixelsPath);
  const n = Number(count), s = Number(size);
  const input = tf.tensor4d(Float32Array.from(pixels), [n, s, s, 3]).div(127.5).sub(1);
  const probabilities = layers.predict(input).arraySync();
  console.log(JSON.stringify({ tfjs: tf.version.tfjs, backend: tf.getBackend(), probabilities }));
}

main();
