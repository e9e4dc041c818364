import { tap } from 'rxjs';
import type { Progress } from './progress.js';
import { defineStage, type Stage } from './stage.js';

/** Counts what passes through into the run's progress (place it after the stage whose rate matters). */
export function trackProgress<T>(
  progress: Progress,
  count: (item: T) => { items?: number; tokens?: number; values?: Record<string, number> },
): Stage<T, T> {
  return defineStage(
    'track-progress',
    tap((item: T) => {
      const c = count(item);
      progress.advance({ items: c.items ?? 1, tokens: c.tokens ?? 0 });
      if (c.values) progress.report(c.values);
    }),
  );
}
