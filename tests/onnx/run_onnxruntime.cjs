// Runs an ONNX file in ONNX Runtime (npm onnxruntime-node) for the export tests:
//   node run_onnxruntime.cjs NPM_DIR MODEL INPUT.bin uint8|float32 DIMS OUT_DIR
// INPUT.bin holds the input's raw little-endian values, DIMS is "N,H,W,C"-style; every output is
// written to OUT_DIR/NAME.bin (float32) and its dimensions printed as one JSON object.
const path = require('path');
const fs = require('fs');
const [npmDir, model, input, dtype, dims, outDir] = process.argv.slice(2);
const ort = require(path.join(npmDir, 'node_modules', 'onnxruntime-node'));

(async () => {
  const session = await ort.InferenceSession.create(model);
  const bytes = fs.readFileSync(input);
  const shape = dims.split(',').map(Number);
  const data = dtype === 'uint8'
    ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)
    : new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const feeds = {[session.inputNames[0]]: new ort.Tensor(dtype, data, shape)};
  const results = await session.run(feeds);
  const shapes = {};
  for (const name of session.outputNames) {
    const t = results[name];
    fs.writeFileSync(path.join(outDir, name + '.bin'), Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    shapes[name] = t.dims;
  }
  console.log(JSON.stringify(shapes));
})().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
