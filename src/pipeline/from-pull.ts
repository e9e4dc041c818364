import { Observable } from 'rxjs';
import type { Flow } from './flow.js';

/**
 * An Observable that pulls from an (async) iterable on demand: with a `flow`, it waits before each item
 * until the asynchronous stages downstream have room, and stops pulling when the run is asked to stop.
 * Without one it emits as fast as the iterable yields (handy in unit tests with small inputs).
 */
export function fromPull<T>(iterable: AsyncIterable<T> | Iterable<T>, flow?: Flow): Observable<T> {
  return new Observable<T>((subscriber) => {
    let closed = false;
    const iterator =
      Symbol.asyncIterator in iterable
        ? (iterable as AsyncIterable<T>)[Symbol.asyncIterator]()
        : (iterable as Iterable<T>)[Symbol.iterator]();
    const pump = async () => {
      for (;;) {
        if (flow) await flow.ready();
        if (closed || flow?.stopped) break;
        const step = await iterator.next();
        if (closed || step.done) break;
        subscriber.next(step.value);
        // Yield to the event loop so a synchronous chain cannot starve timers and signal handlers.
        await new Promise<void>((r) => setImmediate(r));
      }
      subscriber.complete();
    };
    pump().catch((err: unknown) => subscriber.error(err));
    return () => {
      closed = true;
      void iterator.return?.();
    };
  });
}
