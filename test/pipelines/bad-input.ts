// A test pipeline that fails on bad input, before or after writing an output of its own.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { defer } from 'rxjs';
import { definePipeline, opt, UserError } from '../../src/pipeline/index.js';

export default definePipeline({
  name: 'bad-input',
  description: 'Fails with a UserError (runner tests).',
  config: {
    fail: opt.choice(['build', 'stream', 'after_output', 'never'], 'stream', 'where it fails'),
  },
  build(cfg, ctx) {
    if (cfg.fail === 'build') throw new UserError('bad option found while building');
    return defer(async () => {
      if (cfg.fail === 'after_output') writeFileSync(path.join(ctx.runDir, 'output.bin'), 'partial');
      if (cfg.fail !== 'never') throw new UserError('bad input found while streaming');
      return { ok: true };
    });
  },
});
