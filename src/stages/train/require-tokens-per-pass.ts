/**
 * A training run cycles its dataset until every SAE has its tokens; a dataset too small to fill one
 * training batch would then loop forever over a handful of tokens (or none). These two operators, placed
 * after `tokenize` and after `pack`, count one pass and fail it with a UserError naming the dataset, what
 * it has and what training needs, before the model runs on it.
 */
import { concatWith, defer, EMPTY, tap, type MonoTypeOperatorFunction } from 'rxjs';
import { UserError } from '../../pipeline/errors.js';
import type { Flow } from '../../pipeline/flow.js';
import type { TokenBatch, TokenDocument } from '../text/index.js';

export function requireTokensPerPass(o: { need: number; dataset: string; contextSize: number; flow: Flow }): {
  countTokens: MonoTypeOperatorFunction<TokenDocument>;
  checkWindows: MonoTypeOperatorFunction<TokenBatch>;
} {
  let tokenized = 0;
  let windows = 0;
  return {
    countTokens: tap((doc) => (tokenized += doc.tokens.length)),
    checkWindows: (source) =>
      source.pipe(
        tap((batch) => (windows += batch.batchSize)),
        concatWith(
          defer(() => {
            if (windows * o.contextSize < o.need && !o.flow.stopped)
              throw new UserError(
                `dataset ${o.dataset} has ${tokenized} tokens, which make ${windows} full context windows of ${o.contextSize} (${windows * o.contextSize} tokens); training needs at least ${o.need} per pass (--train_batch_size_tokens): use more data or a smaller --context_size or --train_batch_size_tokens`,
              );
            return EMPTY;
          }),
        ),
      ),
  };
}
