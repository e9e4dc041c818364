/**
 * Accumulates the nodes and initializers of an ONNX graph: constants are named and stored once, and each
 * op gets a fresh output name unless the caller names it (hooks, graph outputs).
 */
import { StoredWeight } from '../../io/weight-file.js';
import { TensorElemType } from './onnx-proto.js';
import type { AttributeValue, OnnxNode, OnnxTensor } from './onnx-proto.js';

export class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private readonly known = new Set<string>();
  private counter = 0;
  private multiCounter = 0;

  constant(name: string, dims: readonly number[], data: Float32Array | BigInt64Array | StoredWeight): string {
    if (this.known.has(name)) return name;
    this.known.add(name);
    if (data instanceof StoredWeight) {
      // The absolute path for now; the runner makes it relative to where it writes the model (external data).
      const external = { location: data.file, offset: data.offset, length: data.byteLength };
      this.initializers.push({ name, dims, elemType: TensorElemType.FLOAT, data: external });
      return name;
    }
    const elemType = data instanceof Float32Array ? TensorElemType.FLOAT : TensorElemType.INT64;
    this.initializers.push({ name, dims, elemType, data });
    return name;
  }

  int64(name: string, values: readonly number[], scalar = false): string {
    return this.constant(name, scalar ? [] : [values.length], BigInt64Array.from(values.map(BigInt)));
  }

  scalar(name: string, value: number): string {
    return this.constant(name, [], Float32Array.of(value));
  }

  /** Adds a node; its output is `output` or a fresh name derived from `prefix`. */
  op(
    opType: string,
    inputs: string[],
    prefix: string,
    output?: string,
    attributes?: Record<string, AttributeValue>,
    domain?: string,
  ): string {
    const out = output ?? `${prefix}/${opType}_${this.counter++}`;
    this.nodes.push({
      opType,
      name: `${out}#${opType}`,
      inputs,
      outputs: [out],
      attributes,
      ...(domain ? { domain } : {}),
    });
    return out;
  }

  /** A node with `count` outputs (Split, TopK), named `<prefix>/<op>_m<n>.<i>`. */
  multi(
    opType: string,
    inputs: string[],
    prefix: string,
    count: number,
    attributes?: Record<string, AttributeValue>,
  ): string[] {
    const base = `${prefix}/${opType}_m${this.multiCounter++}`;
    const outputs = Array.from({ length: count }, (_, i) => `${base}.${i}`);
    this.nodes.push({ opType, name: `${base}#${opType}`, inputs, outputs, attributes });
    return outputs;
  }
}
