// How much memory onnxruntime-node 1.30 spends on a model's weights, for each way of giving them to it
// (the measurements behind src/engine/onnx/session-source.ts; docs/large-models.md). A stack of
// Gemma-2-2B-sized MLP matrices ([2304, 9216] and [9216, 2304], float32) is held by this process and given
// to --sessions sessions, each in a fresh process:
//   inline          weights inside the protobuf bytes (what small models do)
//   memory-external ONNX external data handed over from memory (SessionOptions.externalData)
//   file-prepack    external data in a file, session created from the model's path, prepacking on
//   file            the same with prepacking off (session.disable_prepacking), what saeflow does
// For each: RSS after creating the sessions and after one run of each, as anonymous memory and mapped file
// pages, and the time of a run of --rows rows.
//
//   npx tsx bench/onnx-weight-memory.ts [--layers 6] [--sessions 2] [--rows 256] [--modes inline,...]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { WeightFile } from '../src/io/weight-file.js';
import type { Weight } from '../src/io/weight-file.js';
import { TensorElemType, encodeOnnxModel } from '../src/engine/onnx/onnx-proto.js';
import type { OnnxModel, OnnxNode, OnnxTensor } from '../src/engine/onnx/onnx-proto.js';
import { createSession } from '../src/engine/onnx/session-source.js';

const MODES = ['inline', 'memory-external', 'file-prepack', 'file'] as const;
const { values } = parseArgs({
  options: {
    layers: { type: 'string', default: '6' },
    sessions: { type: 'string', default: '2' },
    rows: { type: 'string', default: '256' },
    modes: { type: 'string', default: MODES.join(',') },
    child: { type: 'string' },
  },
});
const D = 2304;
const F = 9216;
const layers = Number(values.layers);
const nSessions = Number(values.sessions);
const rows = Number(values.rows);

function mb(): { anon: number; file: number } {
  const s = readFileSync('/proc/self/status', 'utf8');
  const get = (k: string) => Math.round(Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1]) / 1024);
  return { anon: get('RssAnon'), file: get('RssFile') };
}

function randomMatrix(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let x = seed * 2654435761 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    a[i] = ((x >>> 0) / 2 ** 32 - 0.5) * 0.04;
  }
  return a;
}

/** x -> (x + relu(x W1) W2) per layer, as MatMuls over `weights`. */
function mlpStack(
  weights: Weight[],
  asTensor: (name: string, dims: number[], w: Weight) => OnnxTensor,
): OnnxModel {
  const nodes: OnnxNode[] = [];
  const initializers: OnnxTensor[] = [];
  let x = 'x';
  for (let l = 0; l < layers; l++) {
    initializers.push(
      asTensor(`w1_${l}`, [D, F], weights[2 * l]!),
      asTensor(`w2_${l}`, [F, D], weights[2 * l + 1]!),
    );
    nodes.push(
      { opType: 'MatMul', name: `m1_${l}`, inputs: [x, `w1_${l}`], outputs: [`h${l}`] },
      { opType: 'Relu', name: `r${l}`, inputs: [`h${l}`], outputs: [`a${l}`] },
      { opType: 'MatMul', name: `m2_${l}`, inputs: [`a${l}`, `w2_${l}`], outputs: [`o${l}`] },
      { opType: 'Add', name: `add${l}`, inputs: [x, `o${l}`], outputs: [`x${l}`] },
    );
    x = `x${l}`;
  }
  nodes.push({ opType: 'Identity', name: 'out', inputs: [x], outputs: ['y'] });
  const vi = (name: string) => ({ name, elemType: TensorElemType.FLOAT, dims: ['rows', D] });
  return {
    graph: { name: 'mlp', nodes, initializers, inputs: [vi('x')], outputs: [vi('y')] },
    opset: 17,
    irVersion: 8,
    producer: 'bench',
  };
}

async function child(mode: (typeof MODES)[number]): Promise<void> {
  const base: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: 2,
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
  };
  const host = Array.from({ length: 2 * layers }, (_, i) => randomMatrix(D * F, i + 1));
  let weights: Weight[] = host;
  let file: WeightFile | undefined;
  if (mode === 'file' || mode === 'file-prepack') {
    file = await WeightFile.create();
    weights = [];
    for (const a of host) weights.push(await file.put(a));
    await file.close();
    host.length = 0; // what the loader does: nothing but the file's places stays
  }
  const start = mb();
  const inline = (name: string, dims: number[], w: Weight): OnnxTensor => ({
    name,
    dims,
    elemType: TensorElemType.FLOAT,
    data: w as Float32Array,
  });
  const sessions: ort.InferenceSession[] = [];
  for (let s = 0; s < nSessions; s++) {
    if (mode === 'inline') {
      sessions.push(await ort.InferenceSession.create(encodeOnnxModel(mlpStack(weights, inline)), base));
    } else if (mode === 'memory-external') {
      const model = mlpStack(weights, (name, dims) => ({
        name,
        dims,
        elemType: TensorElemType.FLOAT,
        data: { location: `${name}.bin`, offset: 0, length: dims[0]! * dims[1]! * 4 },
      }));
      const externalData = weights.map((w, i) => ({
        path: `w${i % 2 ? 2 : 1}_${Math.floor(i / 2)}.bin`,
        data: new Uint8Array((w as Float32Array).buffer),
      }));
      sessions.push(await ort.InferenceSession.create(encodeOnnxModel(model), { ...base, externalData }));
    } else {
      const model = mlpStack(weights, (name, dims, w) => {
        const s = w as { file: string; offset: number; byteLength: number };
        return {
          name,
          dims,
          elemType: TensorElemType.FLOAT,
          data: { location: s.file, offset: s.offset, length: s.byteLength },
        };
      });
      // createSession turns prepacking off; file-prepack leaves it on to show what that costs.
      sessions.push(
        mode === 'file' ? await createSession(model, base) : await createFilePrepack(model, base),
      );
    }
  }
  const created = mb();
  const x = randomMatrix(rows * D, 99);
  let seconds = 0;
  for (const s of sessions) {
    await s.run({ x: new ort.Tensor('float32', x, [rows, D]) }); // warm-up: pages in the mapped weights
    const t0 = performance.now();
    await s.run({ x: new ort.Tensor('float32', x, [rows, D]) });
    seconds += (performance.now() - t0) / 1000 / sessions.length;
  }
  const ran = mb();
  file?.remove();
  console.log(JSON.stringify({ mode, start, created, ran, seconds }));
}

/** createSession's file path with the caller's options as they are (prepacking left on). */
async function createFilePrepack(
  model: OnnxModel,
  options: ort.InferenceSession.SessionOptions,
): Promise<ort.InferenceSession> {
  const dir = path.dirname((model.graph.initializers[0]!.data as { location: string }).location);
  const rel = {
    ...model,
    graph: {
      ...model.graph,
      initializers: model.graph.initializers.map((t) => ({
        ...t,
        data: {
          ...(t.data as { location: string; offset: number; length: number }),
          location: 'weights.f32',
        },
      })),
    },
  };
  const file = path.join(dir, 'graph.onnx');
  writeFileSync(file, encodeOnnxModel(rel));
  return ort.InferenceSession.create(file, options);
}

if (values.child) {
  await child(values.child as (typeof MODES)[number]);
} else {
  const gib = (2 * layers * D * F * 4) / 2 ** 30;
  console.log(
    `${layers} layers of [${D}, ${F}] + [${F}, ${D}] float32 weights = ${gib.toFixed(2)} GiB, ${nSessions} session(s), ` +
      `a run of ${rows} rows; MB of this process's RSS, anonymous + mapped file pages, beyond what the weights ` +
      'already took in it before any session',
  );
  console.log('| mode | after creating the sessions | after a run of each | run (s) |\n|---|---|---|---|');
  const scratch = mkdtempSync(path.join(tmpdir(), 'onnx-weight-memory-'));
  for (const mode of values.modes.split(',')) {
    const r = spawnSync(
      process.execPath,
      [...process.execArgv, process.argv[1]!, '--child', mode, ...process.argv.slice(2)],
      { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, TMPDIR: scratch } },
    );
    const last = r.stdout.trim().split('\n').at(-1) ?? '';
    if (r.status !== 0 || !last.startsWith('{')) {
      console.log(
        `| ${mode} | failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' ')} | | |`,
      );
      continue;
    }
    const j = JSON.parse(last) as {
      start: { anon: number; file: number };
      created: { anon: number; file: number };
      ran: { anon: number; file: number };
      seconds: number;
    };
    const d = (m: { anon: number; file: number }) => `${m.anon - j.start.anon} + ${m.file - j.start.file}`;
    console.log(`| ${mode} | ${d(j.created)} | ${d(j.ran)} | ${j.seconds.toFixed(2)} |`);
  }
  rmSync(scratch, { recursive: true, force: true });
}
