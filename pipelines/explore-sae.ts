// Exports a live feature explorer for one SAE into the run directory: explorer.html and its bundled
// explorer.js, model.onnx (the model up to the SAE's hook plus the SAE encoder, built by the same graph
// builder eval-sae uses), the tokenizer's data, onnxruntime-web's WebAssembly, and features.json with the
// dashboards of the newest evaluation of the SAE when there is one. Open it through a static server:
//   npx saeflow-serve <run>   (cross-origin isolated: WebAssembly threads), or any other, on one thread.
// eval-sae --explorer true writes one per evaluated SAE instead, linked from its report.
import { defer } from 'rxjs';
import { writeExplorer } from '../src/explorer/export.js';
import { PAGE_FILE } from '../src/explorer/manifest.js';
import { definePipeline, opt, UserError } from '../src/pipeline/index.js';

export default definePipeline({
  name: 'explore-sae',
  description: 'Export a browser page that runs the model and an SAE on typed text (onnxruntime-web).',
  config: {
    sae: opt.string('', 'the SAE folder (or a run whose saes/ holds exactly one)'),
    model: opt.string('auto', "model; auto: the one the SAE's training run recorded, else as eval-sae"),
    weights: opt.choice(
      ['auto', 'float32', 'float16'] as const,
      'auto',
      'weights in model.onnx; auto: float16 if the feature activations stay within 1e-2 of float32 (measured), else float32',
    ),
    top_k: opt.int(8, 'features shown per token', { min: 1 }),
    webgpu: opt.boolean(
      false,
      "ship onnxruntime-web's WebGPU build (a 26 MB .wasm instead of 14 MB): WebGPU where the browser has it, else WebAssembly",
    ),
    max_model_mb: opt.int(2048, 'refuse models with more float32 weights than this (MiB)', { min: 1 }),
  },
  build(cfg, ctx) {
    return defer(async () => {
      if (cfg.sae === '') throw new UserError('--sae is required (an SAE folder)');
      const result = await writeExplorer({
        sae: cfg.sae,
        out: ctx.runDir,
        model: cfg.model,
        weights: cfg.weights,
        topK: cfg.top_k,
        webgpu: cfg.webgpu,
        maxModelBytes: cfg.max_model_mb * 2 ** 20,
        log: (msg) => ctx.log.info(msg),
      });
      const mb = (n: number) => `${(n / 2 ** 20).toFixed(2)} MiB`;
      for (const [name, bytes] of Object.entries(result.files)) ctx.log.info(`${name}: ${mb(bytes)}`);
      ctx.log.info(`page weight ${mb(result.pageBytes)}; open ${PAGE_FILE} through a static server:`);
      ctx.log.info(`  npx saeflow-serve ${result.dir}   (prints its address)`);
      return {
        dir: result.dir,
        page_bytes: result.pageBytes,
        files: result.files,
        manifest: result.manifest,
      };
    });
  },
});
