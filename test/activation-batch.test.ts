import {
  Field,
  FixedSizeList,
  Float16,
  Float64,
  Int32,
  RecordBatch,
  Table,
  Type,
  makeData,
  tableFromIPC,
  tableToIPC,
} from 'apache-arrow';
import { describe, expect, it } from 'vitest';
import {
  ActivationRechunker,
  activationIds,
  activationLayout,
  castActivationBatch,
  concatActivationBatches,
  hookMatrix,
  hookValues,
  makeActivationBatch,
  rowBytes,
  selectHooks,
  sliceActivationBatch,
} from '../src/arrow/index.js';
import { float16ToFloat32 } from '../src/io/float16.js';
import { HOOKS, syntheticBatch, syntheticStream } from './cache-test-helpers.js';

function expectSameRows(a: RecordBatch, b: RecordBatch): void {
  expect(a.numRows).toBe(b.numRows);
  expect(activationLayout(a)).toEqual(activationLayout(b));
  const ia = activationIds(a);
  const ib = activationIds(b);
  expect(ia && [...ia.seq]).toEqual(ib && [...ib.seq]);
  expect(ia && [...ia.pos]).toEqual(ib && [...ib.pos]);
  expect(ia && [...ia.token]).toEqual(ib && [...ib.token]);
  for (const h of activationLayout(a).hooks)
    expect(hookValues(a, h.name).values).toEqual(hookValues(b, h.name).values);
}

describe('makeActivationBatch', () => {
  it('lays out seq/pos/token and one FixedSizeList<Float32>[d] column per hook, named by the hook', () => {
    const data = Float32Array.from({ length: 3 * 4 }, (_, i) => i / 2);
    const batch = makeActivationBatch({
      seq: [5, 5, 6],
      pos: Int32Array.of(0, 1, 0),
      token: Int32Array.of(50256, 11, 50256),
      hooks: { 'blocks.8.hook_resid_pre': { data, d: 4 } },
    });
    expect(batch.numRows).toBe(3);
    expect(batch.schema.fields.map((f) => `${f.name}:${String(f.type)}`)).toEqual([
      'seq:Int64',
      'pos:Int32',
      'token:Int32',
      'blocks.8.hook_resid_pre:FixedSizeList[4]<Float32>',
    ]);
    expect(activationLayout(batch)).toEqual({
      hasIds: true,
      hooks: [{ name: 'blocks.8.hook_resid_pre', d: 4, dtype: 'float32' }],
    });
    expect([...(activationIds(batch)?.seq ?? [])]).toEqual([5n, 5n, 6n]);
    // Row access through Arrow itself agrees with the flat layout.
    expect([...(batch.getChild('blocks.8.hook_resid_pre')?.get(2) as Iterable<number>)]).toEqual([
      4, 4.5, 5, 5.5,
    ]);
    expect(rowBytes(activationLayout(batch))).toBe(16 + 16);
  });

  it('hookMatrix is a view of float32 columns unless a copy is asked for', () => {
    const data = Float32Array.from({ length: 6 }, (_, i) => i);
    const batch = makeActivationBatch({ hooks: { h: { data, d: 3 } } });
    const view = hookMatrix(batch, 'h');
    expect(view).toEqual(data);
    expect(view.buffer).toBe(data.buffer);
    const copy = hookMatrix(batch, 'h', { copy: true });
    copy[0] = 99;
    expect(hookMatrix(batch, 'h')[0]).toBe(0);
    expect(activationIds(batch)).toBeNull();
  });

  it('stores float16 as Arrow Float16 (Uint16 bits) and widens within float16 precision', () => {
    const data = Float32Array.from({ length: 4 * 8 }, (_, i) => Math.sin(i) * 3 + 1e-3 * i);
    const batch = makeActivationBatch({ hooks: { h: { data, d: 8 } }, dtype: 'float16' });
    const field = batch.schema.fields[0] as Field;
    expect(field.type.typeId).toBe(Type.FixedSizeList);
    expect((field.type as FixedSizeList).children[0]?.type).toBeInstanceOf(Float16);
    const { values, dtype } = hookValues(batch, 'h');
    expect(dtype).toBe('float16');
    expect(values).toBeInstanceOf(Uint16Array);
    const back = hookMatrix(batch, 'h');
    for (let i = 0; i < data.length; i++) {
      // Round-to-nearest: relative error at most 2^-11 for normal float16 values.
      expect(Math.abs((back[i] as number) - (data[i] as number))).toBeLessThanOrEqual(
        Math.abs(data[i] as number) * 2 ** -11 + 1e-7,
      );
    }
    // Float16 bits given directly are taken as they are.
    const again = makeActivationBatch({
      hooks: { h: { data: values as Uint16Array, d: 8 } },
      dtype: 'float16',
    });
    expect(hookValues(again, 'h').values).toEqual(values);
  });

  it('rejects inconsistent inputs', () => {
    const data = new Float32Array(6);
    expect(() =>
      makeActivationBatch({ hooks: { h: { data, d: 4 } }, pos: Int32Array.of(0, 1) } as never),
    ).toThrow(/seq, pos, token/);
    expect(() =>
      makeActivationBatch({
        seq: [0, 0],
        pos: Int32Array.of(0, 1),
        token: Int32Array.of(1, 2),
        hooks: { h: { data, d: 4 } },
      }),
    ).toThrow(/hook h has 6 values, expected 2 x 4/);
    expect(() =>
      makeActivationBatch({
        seq: [0],
        pos: Int32Array.of(0, 1),
        token: Int32Array.of(1, 2),
        hooks: { h: { data, d: 3 } },
      }),
    ).toThrow(/seq has 1 rows/);
    expect(() => makeActivationBatch({ hooks: { h: { data, d: 0 } } })).toThrow(/invalid width/);
  });

  it('activationLayout rejects columns that break the contract', () => {
    const bad = new RecordBatch({
      h: makeData({ type: new Float64(), length: 2, data: new Float64Array(2) }),
    });
    expect(() => activationLayout(bad)).toThrow(/column h is Float64, expected FixedSizeList/);
    const child = makeData({ type: new Float64(), length: 4, data: new Float64Array(4) });
    const type = new FixedSizeList(2, new Field('item', new Float64()));
    const doubles = new RecordBatch({ h: makeData({ type, length: 2, child }) });
    expect(() => hookMatrix(doubles, 'h')).toThrow(/FixedSizeList<Float32 \| Float16>/);
    const partialIds = new RecordBatch({
      pos: makeData({ type: new Int32(), length: 1, data: new Int32Array(1) }),
    });
    expect(() => activationLayout(partialIds)).toThrow(/not all of seq, pos, token/);
    expect(() => hookMatrix(syntheticBatch(0, 2), 'nope')).toThrow(
      /no hook nope; it has blocks.0.hook_resid_pre, blocks.1.hook_mlp_out/,
    );
  });
});

describe('slicing and concatenating', () => {
  it('slices without copying, and the views cover only the slice', () => {
    const batch = syntheticBatch(0, 10);
    const part = sliceActivationBatch(batch, 3, 7);
    expect(part.numRows).toBe(4);
    const d = HOOKS[0]!.d;
    const whole = hookMatrix(batch, HOOKS[0]!.name);
    const sub = hookMatrix(part, HOOKS[0]!.name);
    expect(sub).toEqual(whole.subarray(3 * d, 7 * d));
    expect(sub.buffer).toBe(whole.buffer);
    expect([...(activationIds(part)?.pos ?? [])]).toEqual([3, 4, 5, 6]);
    expect(() => sliceActivationBatch(batch, 5, 11)).toThrow(RangeError);
  });

  it('a sliced batch survives an Arrow IPC round trip (what the Parquet writer sees)', () => {
    const batch = syntheticBatch(0, 10, HOOKS, 'float16');
    const part = sliceActivationBatch(batch, 2, 9);
    const back = tableFromIPC(tableToIPC(new Table([part]), 'stream')).batches[0] as RecordBatch;
    expectSameRows(back, part);
  });

  it('concatenates into one contiguous batch equal to the stream it came from', () => {
    const whole = syntheticBatch(0, 23);
    const parts = [sliceActivationBatch(whole, 0, 5), syntheticBatch(5, 11), sliceActivationBatch(whole, 16)];
    const joined = concatActivationBatches(parts);
    expectSameRows(joined, whole);
    expect(() => concatActivationBatches([whole, syntheticBatch(0, 2, [HOOKS[0]!])])).toThrow(
      /layouts differ/,
    );
    expect(() => concatActivationBatches([])).toThrow(/no batches/);
  });

  it('casts between float32 and float16 and selects hooks', () => {
    const batch = syntheticBatch(0, 6);
    const half = castActivationBatch(batch, 'float16');
    expect(activationLayout(half).hooks.every((h) => h.dtype === 'float16')).toBe(true);
    const back = castActivationBatch(half, 'float32');
    const name = HOOKS[1]!.name;
    expect(hookMatrix(back, name)).toEqual(float16ToFloat32(hookValues(half, name).values as Uint16Array));
    expect(castActivationBatch(batch, 'float32')).toBe(batch);
    const only = selectHooks(batch, [name]);
    expect(activationLayout(only).hooks.map((h) => h.name)).toEqual([name]);
    expect(activationLayout(only).hasIds).toBe(true);
  });
});

describe('ActivationRechunker', () => {
  it('regroups any batch sizes into exact batches and keeps every row in order', () => {
    const stream = syntheticStream([7, 5, 13, 1, 4]);
    const chunker = new ActivationRechunker(4);
    const out = stream.flatMap((b) => chunker.push(b));
    const rest = chunker.flush();
    expect(out.map((b) => b.numRows)).toEqual([4, 4, 4, 4, 4, 4, 4]);
    expect(rest?.numRows).toBe(2);
    expectSameRows(concatActivationBatches([...out, rest as RecordBatch]), syntheticBatch(0, 30));
    expect(chunker.flush()).toBeNull();
  });

  it('passes batches that already line up through without copying', () => {
    const chunker = new ActivationRechunker(8);
    const batch = syntheticBatch(0, 8);
    expect(chunker.push(batch)[0]).toBe(batch);
  });
});
