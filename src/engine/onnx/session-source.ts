/**
 * Creates an onnxruntime session for a built model. Inline weights travel inside the protobuf bytes (one
 * copy per session, under protobuf's 2 GiB limit). Weights stored in a weight file (src/io/weight-file.ts)
 * are ONNX external data: the model is written beside that file and the session is created from its path,
 * so onnxruntime maps the weights from the file, and every session of the model shares those pages.
 * Prepacking is off for such sessions: MLAS would otherwise repack every weight matrix into memory of
 * its own, a copy of all the weights per session (docs/large-models.md has the measurements).
 */
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type * as Ort from 'onnxruntime-node';
import { UserError } from '../../pipeline/errors.js';
import { PROTOBUF_LIMIT, encodeOnnxModel, isExternal, tensorBytes } from './onnx-proto.js';
import type { OnnxModel } from './onnx-proto.js';
import { loadOrt } from './ort.js';

/** Bytes of the weights inside the protobuf, and the directory of the external ones (if any). */
function weightPlacement(model: OnnxModel): { inlineBytes: number; externalDir: string | undefined } {
  let inlineBytes = 0;
  const dirs = new Set<string>();
  for (const t of model.graph.initializers) {
    if (isExternal(t.data)) dirs.add(path.dirname(t.data.location));
    else inlineBytes += tensorBytes(t);
  }
  if (dirs.size > 1) throw new Error(`external weights in several directories: ${[...dirs].join(', ')}`);
  return { inlineBytes, externalDir: [...dirs][0] };
}

/** `model` with its external locations relative to `dir`, as onnxruntime requires. */
function relativeTo(model: OnnxModel, dir: string): OnnxModel {
  const initializers = model.graph.initializers.map((t) =>
    isExternal(t.data) ? { ...t, data: { ...t.data, location: path.relative(dir, t.data.location) } } : t,
  );
  return { ...model, graph: { ...model.graph, initializers } };
}

export async function createSession(
  model: OnnxModel,
  options: Ort.InferenceSession.SessionOptions,
): Promise<Ort.InferenceSession> {
  const ort = await loadOrt();
  const { inlineBytes, externalDir } = weightPlacement(model);
  if (inlineBytes >= PROTOBUF_LIMIT) {
    throw new UserError(
      `the ONNX graph holds ${(inlineBytes / 2 ** 30).toFixed(2)} GiB of weights in memory, over protobuf's ` +
        '2 GiB limit for one ONNX model (models this large are loaded into a weight file: docs/large-models.md)',
    );
  }
  if (externalDir === undefined) return ort.InferenceSession.create(encodeOnnxModel(model), options);
  const file = path.join(externalDir, `graph-${randomBytes(6).toString('hex')}.onnx`);
  writeFileSync(file, encodeOnnxModel(relativeTo(model, externalDir)));
  const extra = (options.extra ?? {}) as { session?: Record<string, string> };
  try {
    return await ort.InferenceSession.create(file, {
      ...options,
      extra: { ...extra, session: { ...extra.session, disable_prepacking: '1' } },
    });
  } finally {
    // The session has read the graph; the weights it maps stay in the weight file.
    rmSync(file, { force: true });
  }
}
