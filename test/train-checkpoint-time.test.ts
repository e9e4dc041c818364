import { from, lastValueFrom } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { SaeTrainer } from '../src/sae/index.js';
import { checkpointEvery, finishTraining, trainSteps } from '../src/stages/train/index.js';
import type { TrainingBatch } from '../src/stages/store/activation-store.js';

/** Just enough of a trainer to count steps and checkpoints; the clock advances one minute per step. */
function fakeTrainer(clock: { t: number }) {
  const saved: Array<{ dir: string; batches: number }> = [];
  let batches = 0;
  const trainer = {
    configs: [{ name: 'fake' }],
    get done() {
      return false;
    },
    get batches() {
      return batches;
    },
    batchesWanted: () => 1,
    checkHookWidths: () => undefined,
    steps: async (items: unknown[]) =>
      items.map(() => {
        batches++;
        clock.t += 60_000;
        return { phase: 'train', saes: [] };
      }),
    saveCheckpoint: async (dir: string) => {
      saved.push({ dir, batches });
    },
  };
  return { trainer: trainer as unknown as SaeTrainer, saved };
}

const batches = (n: number): TrainingBatch[] =>
  Array.from(
    { length: n },
    () => ({ rows: 4, hooks: { h: new Float32Array(8) } }) as unknown as TrainingBatch,
  );

describe('time-based training checkpoints', () => {
  it('writes a checkpoint whenever checkpoint_every_minutes have passed since the last', async () => {
    const clock = { t: 0 };
    const { trainer, saved } = fakeTrainer(clock);
    await lastValueFrom(
      from(batches(25)).pipe(
        trainSteps(trainer),
        checkpointEvery(trainer, { tokens: 0, minutes: 10, dir: 'ckpt', now: () => clock.t }),
        finishTraining(trainer, { checkpointDir: 'ckpt', outputDir: 'out' }),
      ),
    );
    // Ten one-minute steps per checkpoint, then the final one (and the output folders) at the end.
    expect(saved.filter((s) => s.dir === 'ckpt').map((s) => s.batches)).toEqual([10, 20, 25]);
  });

  it('writes none by time when it is 0', async () => {
    const clock = { t: 0 };
    const { trainer, saved } = fakeTrainer(clock);
    await lastValueFrom(
      from(batches(25)).pipe(
        trainSteps(trainer),
        checkpointEvery(trainer, { tokens: 0, minutes: 0, dir: 'ckpt', now: () => clock.t }),
        finishTraining(trainer, { checkpointDir: 'ckpt', outputDir: 'out' }),
      ),
    );
    expect(saved.filter((s) => s.dir === 'ckpt').map((s) => s.batches)).toEqual([25]);
  });
});
