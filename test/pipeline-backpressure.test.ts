import { Subject, take, tap, lastValueFrom, toArray, from, map } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { asyncStage } from '../src/pipeline/async-stage.js';
import { Flow } from '../src/pipeline/flow.js';
import { fromPull } from '../src/pipeline/from-pull.js';

function* endless() {
  for (let i = 0; ; i++) yield i;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('backpressure', () => {
  it('keeps an endless source within maxInFlight of a slow stage', async () => {
    const flow = new Flow(3);
    let pulled = 0;
    let processed = 0;
    let worstLead = 0;
    const source = fromPull(
      (function* () {
        for (const i of endless()) {
          pulled++;
          yield i;
        }
      })(),
      flow,
    );
    const out = await lastValueFrom(
      source.pipe(
        // A cheap synchronous stage in front, like tokenization.
        map((i) => i * 2),
        asyncStage<number, number>(
          'slow',
          async (x, emit) => {
            worstLead = Math.max(worstLead, pulled - processed);
            await sleep(5);
            processed++;
            emit(x);
          },
          { flow },
        ),
        take(40),
        toArray(),
      ),
    );
    expect(out).toEqual(Array.from({ length: 40 }, (_, i) => i * 2));
    expect(flow.peakPending).toBeLessThanOrEqual(3);
    expect(flow.peakPending).toBeGreaterThan(0);
    // Items pulled from the source but not yet through the slow stage never exceed the bound.
    expect(worstLead).toBeLessThanOrEqual(3);
    // take() unsubscribed: the source stopped pulling shortly after.
    await sleep(30);
    expect(pulled).toBeLessThanOrEqual(40 + 3 + 1);
  });

  it('bounds the sum over several slow stages', async () => {
    const flow = new Flow(2);
    let maxPending = 0;
    const stage = (ms: number) =>
      asyncStage<number, number>(
        `slow-${ms}`,
        async (x, emit) => {
          maxPending = Math.max(maxPending, flow.pending);
          await sleep(ms);
          emit(x);
        },
        { flow },
      );
    const out = await lastValueFrom(fromPull(endless(), flow).pipe(stage(2), stage(4), take(15), toArray()));
    expect(out).toHaveLength(15);
    expect(maxPending).toBeLessThanOrEqual(2);
  });

  it('without backpressure a push source floods a slow stage (the test can fail)', async () => {
    const flow = new Flow(3);
    const subject = new Subject<number>();
    const done = lastValueFrom(
      subject.pipe(
        asyncStage<number, number>(
          'slow',
          async (x, emit) => {
            await sleep(1);
            emit(x);
          },
          { flow },
        ),
        toArray(),
      ),
    );
    for (let i = 0; i < 50; i++) subject.next(i);
    subject.complete();
    await done;
    expect(flow.peakPending).toBe(50);
  });

  it('stop() makes the source complete and downstream flush', async () => {
    const flow = new Flow(2);
    let flushed = false;
    const seen: number[] = [];
    const result = lastValueFrom(
      fromPull(endless(), flow).pipe(
        asyncStage<number, number>(
          'collect',
          async (x) => {
            seen.push(x);
            await sleep(2);
            if (x === 10) flow.stop();
          },
          {
            flow,
            flush: (emit) => {
              flushed = true;
              emit(seen.length);
            },
          },
        ),
      ),
    );
    const count = await result;
    expect(flushed).toBe(true);
    expect(count).toBeGreaterThanOrEqual(11);
    expect(count).toBeLessThanOrEqual(11 + 2);
  });

  it('propagates an error from an async stage and releases its pending count', async () => {
    const flow = new Flow(4);
    const run = lastValueFrom(
      from([1, 2, 3]).pipe(
        tap(() => undefined),
        asyncStage<number, number>(
          'fails',
          (x) => {
            if (x === 2) throw new Error('boom at 2');
          },
          { flow },
        ),
      ),
    );
    await expect(run).rejects.toThrow('boom at 2');
    expect(flow.pending).toBe(0);
  });
});
