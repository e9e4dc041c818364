import { Observable } from 'rxjs';
import type { Flow } from './flow.js';
import { defineStage, type Stage } from './stage.js';

/**
 * A stage whose work per item is asynchronous (a model forward, a file write, a training step).
 * Items are processed one at a time, in order. Each item counts towards `flow.pending` from arrival
 * until it is processed, which is what lets sources hold back. Its outputs are handed downstream
 * after its count is released, so an item passing from one such stage to the next is never counted
 * twice and `pending` is exactly the number of items waiting in or worked on by these stages.
 * `flush` runs after the input completes and may emit what the stage still holds.
 */
export function asyncStage<In, Out>(
  name: string,
  process: (item: In, emit: (out: Out) => void) => Promise<void> | void,
  options: { flow?: Flow; flush?: (emit: (out: Out) => void) => Promise<void> | void } = {},
): Stage<In, Out> {
  const { flow, flush } = options;
  return defineStage(
    name,
    (source) =>
      new Observable<Out>((subscriber) => {
        const queue: In[] = [];
        let busy = false;
        let inputDone = false;
        let failed = false;
        // Set when downstream unsubscribed (it completed early or the pipeline failed): stop working.
        let closed = false;
        const drain = async () => {
          if (busy || failed) return;
          busy = true;
          try {
            while (queue.length > 0 && !closed) {
              const item = queue.shift() as In;
              const outputs: Out[] = [];
              try {
                await process(item, (out) => outputs.push(out));
              } finally {
                flow?.add(-1);
              }
              for (const out of outputs) subscriber.next(out);
            }
            if (inputDone && !closed) {
              if (flush) await flush((out) => subscriber.next(out));
              subscriber.complete();
            }
          } catch (err) {
            failed = true;
            for (let i = 0; i < queue.length; i++) flow?.add(-1);
            queue.length = 0;
            subscriber.error(err);
          } finally {
            busy = false;
          }
        };
        const sub = source.subscribe({
          next: (item) => {
            flow?.add(1);
            queue.push(item);
            void drain();
          },
          error: (err) => subscriber.error(err),
          complete: () => {
            inputDone = true;
            void drain();
          },
        });
        return () => {
          closed = true;
          for (let i = 0; i < queue.length; i++) flow?.add(-1);
          queue.length = 0;
          sub.unsubscribe();
        };
      }),
  );
}
