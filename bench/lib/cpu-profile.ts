/**
 * Where a process's main thread spent its time, from a V8 CPU profile (`node --cpu-prof`): every sample goes
 * to the first category whose rule matches a frame on its stack, from the innermost frame out (WebAssembly
 * frames, which carry no file, land where their JavaScript caller does). onnxruntime-node runs a session
 * synchronously on the main thread, so its kernels show up as the time inside its `run`.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** A category and the frames it claims: a regular expression over `url:function` (url: the file's path or URL). */
export type ProfileRules = ReadonlyArray<readonly [string, RegExp]>;

/** Seconds per category (and `other`), over the samples whose time since the profile's start is in [from, to). */
export function profileCategories(
  file: string,
  rules: ProfileRules,
  window: { fromS?: number; toS?: number } = {},
): Record<string, number> {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const memo = new Map<number, string>();
  const categoryOf = (id: number): string => {
    const known = memo.get(id);
    if (known !== undefined) return known;
    const n = byId.get(id)!;
    const name = n.callFrame.functionName;
    let category: string | undefined;
    if (name === '(garbage collector)') category = 'garbage collection';
    else if (name === '(idle)' || name === '(program)') category = 'idle';
    else {
      const key = `${n.callFrame.url}:${name}`;
      category = rules.find(([, re]) => re.test(key))?.[0];
    }
    if (category === undefined) {
      const up = parent.get(id);
      category = up === undefined ? 'other' : categoryOf(up);
    }
    memo.set(id, category);
    return category;
  };
  const out: Record<string, number> = {};
  let t = 0;
  const from = (window.fromS ?? 0) * 1e6;
  const to = (window.toS ?? Infinity) * 1e6;
  profile.samples.forEach((id, i) => {
    t += profile.timeDeltas[i]!;
    if (t < from || t >= to) return;
    const c = categoryOf(id);
    out[c] = (out[c] ?? 0) + profile.timeDeltas[i]! / 1e6;
  });
  return out;
}
