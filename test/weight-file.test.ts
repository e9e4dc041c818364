/**
 * Large-model weights in a weight file (src/io/weight-file.ts, docs/large-models.md), tested at fixture
 * scale: the same tiny families loaded into a file (forced by `weightStorage: 'file'` or a tiny
 * `weightFileAbove`) give the same hooks and logits as in memory on both engines, the file is laid out and
 * removed as promised, and the tfjs engine refuses a model its wasm heap cannot hold before loading it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunner, loadModelFor } from '../src/engine/engines.js';
import { StoredWeight, WeightFile } from '../src/io/weight-file.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { Model, TfjsRunner, listHookNames, loadModel } from '../src/model/index.js';
import type { Model as ModelType, RunResult, TokenBatch } from '../src/model/index.js';
import { familyByName, readModelConfig } from '../src/model/registry.js';
import { checkFitsBackend } from '../src/model/tfjs-runner.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { UserError } from '../src/pipeline/errors.js';

const FAMILIES_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'families');
const scratch = mkdtempSync(path.join(tmpdir(), 'saeflow-weight-file-test-'));

beforeAll(async () => {
  await selectBackend('wasm');
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

async function tokensOf(family: string): Promise<TokenBatch> {
  const { tensors } = await readSafetensors(path.join(FAMILIES_DIR, family, 'reference.safetensors'));
  const t = tensors.get('tokens')!;
  return { data: Int32Array.from(t.data as Int32Array), shape: [t.shape[0]!, t.shape[1]!] };
}

async function runAll(model: ModelType, engine: 'onnx' | 'tfjs', tokens: TokenBatch): Promise<RunResult[]> {
  const runner = await createRunner(model, engine, { threads: 1 });
  try {
    // Two requests, so two onnx sessions map the one file.
    const mid = `blocks.0.hook_resid_post`;
    return [
      await runner.runWithHooks(tokens, { hooks: listHookNames(model.config), returnLogits: true }),
      await runner.runWithHooks(tokens, { hooks: [mid] }),
    ];
  } finally {
    await runner.dispose();
  }
}

function expectSameResults(got: RunResult[], want: RunResult[], what: string): void {
  expect(got.length).toBe(want.length);
  got.forEach((r, i) => {
    expect([...r.activations.keys()], what).toEqual([...want[i]!.activations.keys()]);
    for (const [name, a] of r.activations) {
      expect(Array.from(a.data), `${what} ${name}`).toEqual(Array.from(want[i]!.activations.get(name)!.data));
    }
    if (want[i]!.logits)
      expect(Array.from(r.logits!.data), `${what} logits`).toEqual(Array.from(want[i]!.logits!.data));
  });
}

describe('models loaded into a weight file compute what they compute in memory', () => {
  // gemma2: tied embedding, post-norms; llama: separate lm_head; gpt_neox: its own loader.
  for (const family of ['gemma2', 'llama', 'gpt_neox'] as const) {
    it(
      family,
      async () => {
        const dir = path.join(FAMILIES_DIR, family, 'model');
        const tokens = await tokensOf(family);
        const inMemory = await loadModel(dir, { weightStorage: 'memory' });
        const inFile = await loadModel(dir, { weightStorage: 'file' });
        expect(inMemory.memoryWeightBytes).toBe(inMemory.weightBytes);
        expect(inFile.weightBytes).toBe(inMemory.weightBytes);
        // Only norms, biases and rotary frequencies stay in memory.
        expect(inFile.memoryWeightBytes).toBeLessThan(inMemory.weightBytes / 20);
        const stored = inFile.family.weightArrays(inFile.weights).filter((w) => w instanceof StoredWeight);
        expect(stored.length).toBeGreaterThan(0);
        for (const w of stored) expect(w.offset % 4096).toBe(0);
        // Dashboards read the stored matrices back.
        const dash = inFile.dashboardWeights([0]);
        expect(Array.from(dash.unembed)).toEqual(Array.from(inMemory.dashboardWeights([0]).unembed));
        expect(Array.from(dash.mlpOut.get(0)!)).toEqual(
          Array.from(inMemory.dashboardWeights([0]).mlpOut.get(0)!),
        );
        for (const engine of ['onnx', 'tfjs'] as const) {
          expectSameResults(
            await runAll(inFile, engine, tokens),
            await runAll(inMemory, engine, tokens),
            `${family} ${engine}`,
          );
        }
      },
      120_000,
    );
  }

  it('auto keeps small checkpoints in memory and puts those over the threshold in a file', async () => {
    const dir = path.join(FAMILIES_DIR, 'qwen2', 'model');
    const small = await loadModel(dir);
    expect(small.memoryWeightBytes).toBe(small.weightBytes);
    const forced = await loadModel(dir, { weightFileAbove: 1024 });
    expect(forced.memoryWeightBytes).toBeLessThan(forced.weightBytes);
  });
});

describe('WeightFile', () => {
  it('stores arrays at page-aligned offsets and reads them back; remove deletes its directory', async () => {
    const file = await WeightFile.create(scratch);
    const a = Float32Array.from({ length: 1000 }, (_, i) => i / 7);
    const b = Float32Array.from({ length: 3 }, (_, i) => -i);
    const [wa, wb] = [await file.put(a), await file.put(b)];
    expect([wa.offset, wb.offset]).toEqual([0, 4096]);
    expect(file.bytes).toBe(4096 + 12);
    await file.close();
    expect(Array.from(wa.read())).toEqual(Array.from(a));
    expect(Array.from(wb.read())).toEqual(Array.from(b));
    file.remove();
    expect(existsSync(file.dir)).toBe(false);
    expect(() => wa.read()).toThrow();
  });

  it('is removed when its process exits, and a killed process leaves nothing behind for long', async () => {
    const root = mkdtempSync(path.join(scratch, 'exit-'));
    const module = path.resolve('src/io/weight-file.ts');
    const script = `
      import { WeightFile } from ${JSON.stringify(module)};
      const f = await WeightFile.create(${JSON.stringify(root)});
      await f.put(new Float32Array(10));
      console.log(f.dir);
      if (process.argv[2] === 'kill') process.kill(process.pid, 'SIGKILL');`;
    const file = path.join(root, 'child.mts');
    writeFileSync(file, script);
    const tsx = path.resolve('node_modules/.bin/tsx');
    const clean = spawnSync(tsx, [file], { encoding: 'utf8' });
    expect(clean.status).toBe(0);
    expect(existsSync(clean.stdout.trim())).toBe(false);
    spawnSync(tsx, [file, 'kill'], { encoding: 'utf8' });
    const left = readdirSync(root).filter((n) => n.startsWith('saeflow-weights-'));
    expect(left.length).toBe(1);
    // The next weight file under the same root sweeps the dead process's directory.
    const next = await WeightFile.create(root);
    expect(readdirSync(root).filter((n) => n.startsWith('saeflow-weights-'))).toEqual([
      path.basename(next.dir),
    ]);
    await next.close();
    next.remove();
  }, 60_000);
});

describe('the tfjs engine refuses models its wasm heap cannot hold', () => {
  const GEMMA2_2B_BYTES = 10_457_367_552;

  it('in one line naming the size and the onnx engine', () => {
    expect(() => checkFitsBackend(GEMMA2_2B_BYTES, 'wasm')).toThrow(UserError);
    expect(() => checkFitsBackend(GEMMA2_2B_BYTES, 'wasm')).toThrow(
      /^the model's weights take 10\.46 GB as float32, .*use --engine onnx$/,
    );
    expect(() => checkFitsBackend(2 ** 31, 'wasm')).not.toThrow();
    expect(() => checkFitsBackend(GEMMA2_2B_BYTES, 'tensorflow')).not.toThrow();
  });

  it('when a runner is created for a model whose weights are in a file', async () => {
    const dir = path.join(FAMILIES_DIR, 'gemma2', 'model');
    const config = await readModelConfig(dir);
    const small = await loadModel(dir, { weightStorage: 'file' });
    // The same model with its embedding claiming Gemma 2 2B's size; nothing is read before the refusal.
    const w = small.weights as { embed: StoredWeight; unembed: StoredWeight };
    const huge = new StoredWeight(w.embed.file, 0, 256000 * 2304);
    const model = Model.bind(familyByName('gemma2'), config, { ...w, embed: huge, unembed: huge });
    expect(() => TfjsRunner.create(model)).toThrow(/as float32, more than the tfjs engine's wasm backend/);
  });

  it('from the checkpoint headers, before loading anything', async () => {
    const dir = path.join(scratch, 'huge');
    await mkdir(dir, { recursive: true });
    const config = path.join(FAMILIES_DIR, 'gemma2', 'model', 'config.json');
    await writeFile(path.join(dir, 'config.json'), await readFile(config, 'utf8'));
    // A 3 GB safetensors file, sparse on disk: a header claiming one big tensor and a hole for its data.
    const n = 750_000_000;
    const header = Buffer.from(
      JSON.stringify({ 'model.embed_tokens.weight': { dtype: 'F32', shape: [n], data_offsets: [0, n * 4] } }),
    );
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(header.length));
    const file = path.join(dir, 'model.safetensors');
    writeFileSync(file, Buffer.concat([prefix, header]));
    spawnSync('truncate', ['-s', String(8 + header.length + n * 4), file]);
    await expect(loadModelFor(dir, 'tfjs')).rejects.toThrow(/weights take 3\.00 GB as float32/);
  });
});
