/**
 * The explorer's ONNX model: the model's forward up to the SAE's hook and the SAE's encoder, built by the
 * same graph builder the evaluator uses (src/engine/onnx/model-graph.ts, the family's one forward with the
 * SAE spliced in by src/model/replacement.ts), keeping only the feature activations as output. What the
 * page runs is therefore the forward saeflow itself runs, not a second implementation of it.
 */
import { keepOutputs, buildModelGraph, INPUT_IDS, saeOutputNames } from '../engine/onnx/model-graph.js';
import { isExternal, TensorElemType } from '../engine/onnx/onnx-proto.js';
import type { OnnxModel, OnnxNode, OnnxTensor } from '../engine/onnx/onnx-proto.js';
import { float32ToFloat16 } from '../io/float16.js';
import type { Model } from '../model/family.js';
import { planRun } from '../model/hook-points.js';
import type { ReplacementSae } from '../model/replacement.js';

export interface ExplorerGraph {
  model: OnnxModel;
  /** Int32 [batch, seq] token ids. */
  input: string;
  /** Float [batch * seq, d_sae]: every feature's activation at every token. */
  features: string;
}

/**
 * `hookOut` is the hook the SAE replaces (for a transcoder, its output hook; `hookIn` its input). The
 * forward stops there: nothing past it is built or shipped.
 */
export function buildExplorerGraph(
  model: Model,
  sae: ReplacementSae,
  hookOut: string,
  hookIn: string = hookOut,
): ExplorerGraph {
  const plan = planRun(model.config, { interventions: [hookOut] });
  const built = buildModelGraph(model, [
    {
      plan,
      interventions: { [hookOut]: { kind: 'sae', sae, ...(hookIn !== hookOut ? { input: hookIn } : {}) } },
    },
  ]);
  const features = saeOutputNames('', hookOut).features;
  return { model: keepOutputs(built.model, [features]), input: INPUT_IDS, features };
}

/** Float initializers smaller than this stay float32: biases and norms are a rounding error of the bytes. */
const FLOAT16_MIN_ELEMENTS = 1024;

/**
 * The model with its larger float32 weights stored as float16, each widened back by a Cast at the start of
 * the graph, so the page downloads half the bytes while every operation still computes in float32: only
 * the weights' rounding differs (the explorer measures what that does to the activations before using it).
 */
export function withFloat16Weights(model: OnnxModel): OnnxModel {
  const casts: OnnxNode[] = [];
  const initializers: OnnxTensor[] = model.graph.initializers.map((t) => {
    if (t.elemType !== TensorElemType.FLOAT || isExternal(t.data) || !(t.data instanceof Float32Array)) {
      return t;
    }
    if (t.data.length < FLOAT16_MIN_ELEMENTS) return t;
    const half = `${t.name}.f16`;
    casts.push({
      opType: 'Cast',
      name: `${t.name}.widen`,
      inputs: [half],
      outputs: [t.name],
      attributes: { to: { kind: 'int', value: TensorElemType.FLOAT } },
    });
    return { name: half, dims: t.dims, elemType: TensorElemType.FLOAT16, data: float32ToFloat16(t.data) };
  });
  return { ...model, graph: { ...model.graph, initializers, nodes: [...casts, ...model.graph.nodes] } };
}
