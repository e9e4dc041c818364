/**
 * A GraphBuilder that builds each distinct computation once: a node with the same op, inputs and
 * attributes as an earlier one is not added again, the earlier output is returned instead. Several forwards
 * of one graph then share what they have in common: a patched forward is the clean one up to its first
 * replaced hook, so only the part after that hook is built (and run) again.
 */
import { GraphBuilder } from './graph-builder.js';
import { isExternal } from './onnx-proto.js';
import type { AttributeValue } from './onnx-proto.js';

/** A key for an attribute's value; null for a subgraph, whose nodes are never compared (never shared). */
function attributeKey(a: AttributeValue): string | null {
  if (a.kind === 'graph') return null;
  if (a.kind !== 'tensor') return `${a.kind}:${String(a.value)}`;
  const t = a.value;
  if (isExternal(t.data)) return null;
  return `tensor:${t.elemType}:${t.dims.join('x')}:${Array.from(t.data, String).join(',')}`;
}

function nodeKey(
  opType: string,
  inputs: readonly string[],
  attributes?: Record<string, AttributeValue>,
): string | null {
  const attrs: string[] = [];
  for (const [k, v] of Object.entries(attributes ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const key = attributeKey(v);
    if (key === null) return null;
    attrs.push(`${k}=${key}`);
  }
  // Tensor names never contain a newline, so the parts cannot run into each other.
  return [opType, inputs.join('\n'), attrs.join('\n')].join('\n\n');
}

export class SharingGraphBuilder extends GraphBuilder {
  private readonly built = new Map<string, string[]>();

  /** The outputs of an identical earlier node, else those `build` adds (remembered for next time). */
  private shared(
    opType: string,
    inputs: readonly string[],
    attributes: Record<string, AttributeValue> | undefined,
    build: () => string[],
  ): string[] {
    const key = nodeKey(opType, inputs, attributes);
    const earlier = key === null ? undefined : this.built.get(key);
    if (earlier) return earlier;
    const outputs = build();
    if (key !== null) this.built.set(key, outputs);
    return outputs;
  }

  /** As GraphBuilder.op, but returns the output of an identical earlier node (whatever it was named). */
  override op(
    opType: string,
    inputs: string[],
    prefix: string,
    output?: string,
    attributes?: Record<string, AttributeValue>,
    domain?: string,
  ): string {
    // Contrib ops are keyed apart from any ONNX op of the same name.
    const type = domain ? `${domain}.${opType}` : opType;
    return this.shared(type, inputs, attributes, () => [
      super.op(opType, inputs, prefix, output, attributes, domain),
    ])[0]!;
  }

  /** As GraphBuilder.multi, shared the same way. */
  override multi(
    opType: string,
    inputs: string[],
    prefix: string,
    count: number,
    attributes?: Record<string, AttributeValue>,
  ): string[] {
    return this.shared(opType, inputs, attributes, () =>
      super.multi(opType, inputs, prefix, count, attributes),
    );
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
