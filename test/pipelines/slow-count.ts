// A test pipeline: counts through an endless (or bounded) source with a deliberately slow stage.
import { map } from 'rxjs';
import { asyncStage, definePipeline, fromPull, opt, trackProgress } from '../../src/pipeline/index.js';

function* naturals(start: number, end: number | null) {
  for (let i = start; end === null || i < end; i++) yield i;
}

export default definePipeline({
  name: 'slow-count',
  description: 'Counts integers through a slow stage (framework tests).',
  config: {
    count: opt.nullable(opt.int(100, 'how many items (none: endless)', { min: 0 })),
    delay_ms: opt.number(1, 'delay of the slow stage per item', { min: 0 }),
    label: opt.string('x', 'a label'),
    mode: opt.choice(['fast', 'slow'], 'fast', 'a choice'),
    nested: { depth: opt.int(2, 'a nested option', { min: 1 }), flag: opt.boolean(false, 'a nested flag') },
  },
  build(cfg, ctx) {
    const start = ctx.state.get<number>('done') ?? 0;
    let done = start;
    ctx.progress.setTotal(cfg.count ?? undefined);
    return fromPull(naturals(start, cfg.count), ctx.flow).pipe(
      asyncStage<number, number>(
        'slow',
        async (i, emit) => {
          await new Promise((r) => setTimeout(r, cfg.delay_ms));
          emit(i);
        },
        { flow: ctx.flow },
      ),
      trackProgress(ctx.progress, () => ({ items: 1, tokens: 1 })),
      map((i) => {
        done = i + 1;
        ctx.state.set('done', done);
        return { done, started_at: start, label: cfg.label, depth: cfg.nested.depth };
      }),
    );
  },
});
