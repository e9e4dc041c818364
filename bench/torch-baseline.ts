// The PyTorch side of the benches: which interpreters have torch, and running a bench/torch script with
// each of them at each intra-op thread count that can be fastest (1 and every core; bench/torch/machine.py
// says why both), with OPENBLAS_CORETYPE=SkylakeX, the fastest OpenBLAS kernel on this machine.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/**
 * Interpreters from `spec` (`auto`: Debian's /usr/bin/python3, whose python3-torch uses OpenBLAS, and the
 * `python3` on PATH, e.g. pip's MKL build; else a comma-separated list) that import torch, one per
 * executable. With `install`, Debian's python3-torch and libopenblas0-pthread are installed first when
 * none has torch (needs root and apt).
 */
export function pythonsWithTorch(spec: string, install: boolean): string[] {
  const find = (): string[] => {
    const candidates = spec === 'auto' ? ['/usr/bin/python3', 'python3'] : spec.split(',');
    const seen = new Set<string>();
    const found: string[] = [];
    for (const py of candidates) {
      const r = spawnSync(py, ['-c', 'import sys, torch; print(sys.executable)'], { encoding: 'utf8' });
      if (r.status !== 0) continue;
      const exe = r.stdout.trim();
      const key = existsSync(exe) ? realpathSync(exe) : exe;
      if (seen.has(key)) continue;
      seen.add(key);
      found.push(py);
    }
    return found;
  };
  let pythons = find();
  if (pythons.length === 0 && install) {
    console.error('no python has torch: installing Debian python3-torch and libopenblas0-pthread');
    const r = spawnSync('apt-get', ['install', '-y', 'python3-torch', 'libopenblas0-pthread'], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (r.status !== 0) console.error('apt-get failed; PyTorch baselines skipped');
    pythons = find();
  }
  if (pythons.length === 0) console.error('PyTorch not found (pass --install-torch, or pip install torch)');
  return pythons;
}

export interface TorchLine {
  tokens_per_s: number;
  torch: string;
  threads: number;
  blas: string;
  [key: string]: unknown;
}

/** Thread counts worth trying: one OpenMP thread (BLAS threads on its own) and every core. */
export function torchThreadCounts(): number[] {
  return [...new Set([1, availableParallelism()])];
}

/**
 * SkylakeX, OpenBLAS's fastest kernel where the processor has AVX-512; elsewhere (this project's machines
 * are not all of one kind) that kernel dies with an illegal instruction, so the environment's choice stays.
 */
function openblasCoretype(): Record<string, string> {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return {};
  }
  return /\bavx512f\b/.test(cpuinfo) ? { OPENBLAS_CORETYPE: 'SkylakeX' } : {};
}

/**
 * Runs `script args --threads N` with `py` for each thread count; returns the JSON lines of each
 * successful run (a failed run is reported on stderr and skipped).
 */
export function runTorch(py: string, script: string, args: string[], what: string): TorchLine[] {
  const lines: TorchLine[] = [];
  for (const threads of torchThreadCounts()) {
    const r = spawnSync(py, [script, ...args, '--threads', String(threads)], {
      encoding: 'utf8',
      env: { ...process.env, ...openblasCoretype() },
      maxBuffer: 1 << 24,
    });
    if (r.status !== 0) {
      console.error(
        `PyTorch (${py}, ${threads} threads) ${what} failed: ${(r.stderr ?? r.error?.message ?? '').slice(-300)}`,
      );
      continue;
    }
    // One JSON line per measurement (sae_step.py prints one per implementation).
    for (const line of r.stdout.trim().split('\n'))
      if (line.startsWith('{')) lines.push(JSON.parse(line) as TorchLine);
  }
  return lines;
}

/**
 * Interpreters from `spec` (`auto`: `python3` on PATH, then the venv that docs/large-models.md creates,
 * /tmp/famvenv) that import torch and transformers, for the benches that run Hugging Face's models.
 */
export function pythonsWithTransformers(spec: string): string[] {
  const candidates = spec === 'auto' ? ['python3', '/tmp/famvenv/bin/python'] : spec.split(',');
  const found = candidates.filter(
    (py) =>
      spawnSync(py, ['-c', 'import torch, transformers, safetensors'], { encoding: 'utf8' }).status === 0,
  );
  if (found.length === 0) {
    console.error(
      'no python with torch, transformers and safetensors: python3 -m venv /tmp/famvenv && ' +
        '/tmp/famvenv/bin/pip install torch transformers safetensors',
    );
  }
  return found;
}
