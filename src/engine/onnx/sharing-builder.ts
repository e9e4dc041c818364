/**
 * A GraphBuilder that builds each distinct computation once: a node with the same op, inputs and
 * attributes as an earlier one is not added again, the earlier output is returned instead. Several forwards
 * of one graph then share what they have in common: a patched forward is the clean one up to its first
 * replaced hook, so only the part after that hook is built (and run) again.
 */
import { GraphBuilder } from './graph-builder.js';
import type { AttributeValue } from './onnx-proto.js';

function attributeKey(a: AttributeValue): string {
  if (a.kind !== 'tensor') return `${a.kind}:${String(a.value)}`;
  const t = a.value;
  return `tensor:${t.elemType}:${t.dims.join('x')}:${Array.from(t.data, String).join(',')}`;
}

function nodeKey(
  opType: string,
  inputs: readonly string[],
  attributes?: Record<string, AttributeValue>,
): string {
  const attrs = Object.entries(attributes ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${attributeKey(v)}`);
  // Tensor names never contain a newline, so the parts cannot run into each other.
  return [opType, inputs.join('\n'), attrs.join('\n')].join('\n\n');
}

export class SharingGraphBuilder extends GraphBuilder {
  private readonly built = new Map<string, string[]>();

  /** As GraphBuilder.op, but returns the output of an identical earlier node (whatever it was named). */
  override op(
    opType: string,
    inputs: string[],
    prefix: string,
    output?: string,
    attributes?: Record<string, AttributeValue>,
  ): string {
    const key = nodeKey(opType, inputs, attributes);
    const earlier = this.built.get(key);
    if (earlier) return earlier[0]!;
    const out = super.op(opType, inputs, prefix, output, attributes);
    this.built.set(key, [out]);
    return out;
  }

  /** As GraphBuilder.multi, shared the same way. */
  override multi(
    opType: string,
    inputs: string[],
    prefix: string,
    count: number,
    attributes?: Record<string, AttributeValue>,
  ): string[] {
    const key = nodeKey(opType, inputs, attributes);
    const earlier = this.built.get(key);
    if (earlier) return earlier;
    const outputs = super.multi(opType, inputs, prefix, count, attributes);
    this.built.set(key, outputs);
    return outputs;
  }

  /**
   * Makes `value` available under `name` (a graph output): an Identity node unless it already has that
   * name. Never shared, since two outputs may alias the same value.
   */
  alias(value: string, name: string): string {
    if (value === name) return name;
    return super.op('Identity', [value], name, name);
  }
}
