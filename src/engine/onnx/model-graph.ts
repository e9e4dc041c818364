/**
 * Builds an ONNX graph of model forwards by running the family's one forward (src/model/family.ts) on the
 * op layer's OnnxOps: the captured hooks become graph outputs named after the hook, in their TransformerLens
 * shapes, and nothing past the deepest one is built unless logits are wanted. Weights become initializers
 * that view the model's arrays (no copy until the model is encoded).
 *
 * One graph may hold several forwards of the same tokens (a clean one and patched ones, for the evaluator):
 * forward i's outputs are prefixed `forward<i>/` (none for forward 0), identical nodes are built once
 * (sharing-builder.ts), so a forward with a replaced hook recomputes only what comes after that hook, and
 * later forwards compare their predictions with forward 0's (KL) inside the graph. Replacements, loss and KL
 * are the op-layer definitions both engines share (src/model/replacement.ts, loss.ts).
 */
import type { Model } from '../../model/family.js';
import { runForward } from '../../model/family.js';
import { hookShape, parseHookName } from '../../model/hook-points.js';
import type { HookSite, RunPlan } from '../../model/hook-points.js';
import { klDivergence, nextTokenLoss, referenceOf } from '../../model/loss.js';
import type { ReferenceLogits } from '../../model/loss.js';
import { applyReplacement, checkReplacement } from '../../model/replacement.js';
import type { HookReplacement, ReplacementSae, SaeValues } from '../../model/replacement.js';
import { hookOrderChecker } from '../../model/runner.js';
import { OnnxOps, sharingOnnxOps } from '../../ops/onnx-ops.js';
import { TensorElemType } from './onnx-proto.js';
import type { OnnxModel } from './onnx-proto.js';

export const INPUT_IDS = 'input_ids';
/** Float [batch, seq]: 1 where SAE replacements apply, 0 where the original activation is kept. */
export const KEEP_MASK = 'keep';
export const LOGITS = 'logits';
export const LOSS = 'loss_per_token';
export const KL = 'kl';

/** One forward of a graph. */
export interface ForwardSpec {
  /** Hooks to capture and how far to run (planRun); with logits, loss or KL it runs to the end. */
  plan: RunPlan;
  /** Hook name -> replacement; the forward continues from the replaced value. */
  interventions?: Readonly<Record<string, HookReplacement>>;
  logits?: boolean;
  /** Next-token cross-entropy [batch, seq - 1]. */
  loss?: boolean;
  /** KL(forward 0's next-token distribution ‖ this forward's) at every position, [batch, seq]. */
  kl?: boolean;
}

export interface ModelGraph {
  model: OnnxModel;
  /** Graph outputs in order: per forward its captured hooks (execution order), then logits, loss, KL, SAEs. */
  outputNames: string[];
  /** Whether the graph reads the KEEP_MASK input. */
  usesKeepMask: boolean;
}

/** Prefix of forward i's output names. */
export function forwardPrefix(i: number): string {
  return i === 0 ? '' : `forward${i}/`;
}

/** Output names of the SAE replacing `hook` in a forward: features [rows, d_sae], reconstruction [rows, d_out]. */
export function saeOutputNames(prefix: string, hook: string): { features: string; reconstruction: string } {
  return { features: `${prefix}${hook}/sae_features`, reconstruction: `${prefix}${hook}/sae_reconstruction` };
}

/** Symbolic batch/seq markers passed to hookShape so the one shape rule yields symbolic dims. */
const BATCH = -1;
const SEQ = -2;

/**
 * Builds one graph holding every forward of `forwards` over the same input ids. Replacements are checked
 * first (UserErrors naming the hook or SAE).
 */
export function buildModelGraph(model: Model, forwards: readonly ForwardSpec[]): ModelGraph {
  const config = model.config;
  for (const f of forwards) {
    for (const [hook, r] of Object.entries(f.interventions ?? {})) checkReplacement(config, hook, r);
  }
  if (forwards[0]?.kl) throw new Error('buildModelGraph: forward 0 is the KL reference');

  // One forward needs no sharing, and a plain builder lets outputs rename the nodes that compute them.
  const o = forwards.length === 1 ? new OnnxOps() : sharingOnnxOps();
  const ids = o.input(INPUT_IDS, ['batch', 'seq'], TensorElemType.INT32);
  let keep: string | undefined;
  const saeKeys = new Map<ReplacementSae, string>();
  // Outputs are declared once everything is built: declaring one may rename the node that computes it.
  const outputs: Array<[value: string, name: string, dims: Array<number | string>]> = [];
  const output = (value: string, name: string, dims: Array<number | string>): void => {
    outputs.push([value, name, dims]);
  };
  const symbolic = (site: HookSite): Array<number | string> =>
    hookShape(config, site, BATCH, SEQ).map((d) => (d === BATCH ? 'batch' : d === SEQ ? 'seq' : d));

  let reference: ReferenceLogits<string> | undefined;
  // Forward 0 then runs to its logits whatever its plan, as the reference distribution.
  const anyKl = forwards.some((f) => f.kl);

  forwards.forEach((f, i) => {
    const prefix = forwardPrefix(i);
    const interventions = f.interventions ?? {};
    /** Each hook's value as the forward computed it, before any replacement there (SAE inputs)... */
    const original = new Map<string, string>();
    /** ...and what the forward continued with (captures). */
    const after = new Map<string, string>();
    const replaced: Array<{ hook: string; r: ReplacementSae; sae: SaeValues<string> }> = [];
    const needFinal = f.plan.needLogits || f.logits || f.loss || f.kl || (i === 0 && anyKl);
    const stopAfter = needFinal ? Infinity : f.plan.stopAfter;
    const order = hookOrderChecker(config);

    const final = runForward(o, model, ids, (hook, value) => {
      const at = order(hook);
      original.set(hook, value);
      let out = value;
      const r = interventions[hook];
      if (r !== undefined) {
        let saeKey = '';
        if (r.kind === 'sae') {
          saeKey = saeKeys.get(r.sae) ?? `sae${saeKeys.size}`;
          saeKeys.set(r.sae, saeKey);
          keep ??= o.input(KEEP_MASK, ['batch', 'seq']);
        }
        const applied = applyReplacement(o, r, {
          value,
          input: r.kind === 'sae' ? original.get(r.input ?? hook)! : value,
          keep: r.kind === 'sae' ? keep : undefined,
          saeKey,
          rank: hookShape(config, parseHookName(config, hook).site, 1, 1).length,
        });
        out = applied.value;
        if (applied.sae && r.kind === 'sae') replaced.push({ hook, r: r.sae, sae: applied.sae });
      }
      after.set(hook, out);
      return at >= stopAfter ? undefined : out;
    });

    for (const h of f.plan.capture) {
      const value = after.get(h.name);
      if (value === undefined) throw new Error(`buildModelGraph: ${h.name} was not reached`);
      output(value, `${prefix}${h.name}`, symbolic(h.site));
    }
    if (needFinal) {
      if (final === undefined) throw new Error('buildModelGraph: the forward stopped before the logits');
      const logits = o.scope(`${prefix}head`, () => model.unembed(o, final));
      if (f.logits) output(logits, `${prefix}${LOGITS}`, ['batch', 'seq', config.vocabSize]);
      o.scope(`${prefix}head`, () => {
        const logProbs = f.loss || f.kl || (i === 0 && anyKl) ? o.logSoftmax(logits) : '';
        // The sharing builder makes referenceOf's log softmax the one above.
        if (i === 0 && anyKl) reference = referenceOf(o, logits);
        if (f.loss) output(nextTokenLoss(o, logProbs, ids), `${prefix}${LOSS}`, ['batch', 'seq_minus_1']);
        if (f.kl) output(klDivergence(o, reference!, logProbs), `${prefix}${KL}`, ['batch', 'seq']);
      });
    }
    for (const { hook, r, sae } of replaced) {
      const names = saeOutputNames(prefix, hook);
      output(sae.features, names.features, ['rows', r.config.d_sae]);
      output(sae.reconstruction, names.reconstruction, ['rows', r.config.d_out ?? r.config.d_in]);
    }
  });

  /** Values already made graph outputs, by value: a second output of one value copies the first. */
  const emitted = new Map<string, string>();
  for (const [value, name, dims] of outputs) {
    o.output(emitted.get(value) ?? value, name, dims);
    if (!emitted.has(value)) emitted.set(value, name);
  }
  const built = withoutDeadNodes(o.model(config.family));
  return {
    model: built,
    outputNames: o.outputs.map((x) => x.name),
    usesKeepMask: built.graph.inputs.some((x) => x.name === KEEP_MASK),
  };
}

/**
 * The model with only the named outputs, and without what they do not need: a graph exported for another
 * runtime (the browser explorer) wants an SAE's features but not its reconstruction, whose decoder weights
 * would then be shipped for nothing.
 */
export function keepOutputs(model: OnnxModel, names: readonly string[]): OnnxModel {
  const missing = names.filter((n) => !model.graph.outputs.some((x) => x.name === n));
  if (missing.length > 0) throw new Error(`keepOutputs: the graph has no output ${missing.join(', ')}`);
  const outputs = model.graph.outputs.filter((x) => names.includes(x.name));
  return withoutDeadNodes({ ...model, graph: { ...model.graph, outputs } });
}

/**
 * The model without the nodes and initializers no output depends on: a forward computes some values only
 * for hooks a request may capture (GPT-2's repeated position embedding), and onnxruntime would run them.
 */
function withoutDeadNodes(model: OnnxModel): OnnxModel {
  const { graph } = model;
  const live = new Set(graph.outputs.map((x) => x.name));
  const kept: typeof graph.nodes = [];
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i]!;
    if (!node.outputs.some((x) => live.has(x))) continue;
    kept.push(node);
    for (const input of node.inputs) live.add(input);
  }
  kept.reverse();
  return {
    ...model,
    graph: {
      ...graph,
      nodes: kept,
      initializers: graph.initializers.filter((t) => live.has(t.name)),
      inputs: graph.inputs.filter((x) => live.has(x.name)),
    },
  };
}
