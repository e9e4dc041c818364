// The profiling page: loads an explorer folder's model.onnx into onnxruntime-web (WebAssembly, one thread)
// with its profiler on, runs 128 tokens --runs times, and logs the profiler's JSON records to the console,
// where profile.ts collects them. Bundled by profile.ts; not part of any explorer.
import * as ort from 'onnxruntime-web/wasm';

/** The page globals used here, typed locally: tools/ compiles without the DOM library. */
const page = globalThis as unknown as {
  location: { search: string };
  document: { baseURI: string; title: string };
};

async function main(): Promise<void> {
  const query = new URLSearchParams(page.location.search);
  ort.env.wasm.wasmPaths = { wasm: new URL(query.get('wasm')!, page.document.baseURI).href };
  ort.env.wasm.numThreads = 1;
  const response = await fetch(query.get('model')!);
  if (!response.ok) throw new Error(`${query.get('model')}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const created = performance.now();
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['wasm'],
    enableProfiling: true,
    // Info: onnxruntime logs which graph transformers changed the graph (ConstantFolding among them).
    logSeverityLevel: 1,
  });
  console.log(`saeflow-profile session created in ${(performance.now() - created).toFixed(0)} ms`);
  const ids = Int32Array.from({ length: 128 }, (_, i) => 198 + ((i * 37) % 5000));
  for (let i = 0; i < Number(query.get('runs')); i++) {
    const started = performance.now();
    await session.run({ [session.inputNames[0]!]: new ort.Tensor('int32', ids, [1, ids.length]) });
    console.log(`saeflow-profile run ${i + 1}: ${(performance.now() - started).toFixed(1)} ms`);
  }
  session.endProfiling();
  page.document.title = 'done';
}

main().catch((e: unknown) => {
  console.log(`saeflow-profile error ${(e as Error).message}`);
  page.document.title = 'done';
});
