/**
 * onnxruntime-node, loaded on first use rather than when a module is imported: where its native binding
 * cannot load, only the onnx engine fails (and `--engine auto` falls back to tfjs) instead of every command.
 */
import type * as Ort from 'onnxruntime-node';

let loading: Promise<typeof Ort> | undefined;

export function loadOrt(): Promise<typeof Ort> {
  loading ??= import('onnxruntime-node');
  return loading;
}
