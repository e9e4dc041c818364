/**
 * The weight processing an evaluation loads the model with: what the SAEs' cfg.json records
 * (`metadata.model_from_pretrained_kwargs`, as SAELens writes it), unless the user asks for another. All SAEs of
 * one evaluation share one model, so SAEs trained on differently processed models cannot be evaluated together.
 */
import type { WeightProcessing } from '../model/process-weights.js';
import { UserError } from '../pipeline/errors.js';
import { requiredProcessingOf } from '../sae-formats/types.js';
import type { SaeFolderConfig } from '../sae/saelens-folder.js';

export interface ProcessingChoice {
  processing: WeightProcessing;
  /** SAEs whose recorded processing differs from an explicitly requested one (evaluated anyway). */
  mismatched: Array<{ name: string; recorded: WeightProcessing }>;
}

export function evalProcessing(
  requested: WeightProcessing | null,
  targets: ReadonlyArray<{ name: string; config: Pick<SaeFolderConfig, 'metadata'> }>,
): ProcessingChoice {
  const recorded = targets.map((t) => ({ name: t.name, recorded: requiredProcessingOf(t.config) }));
  if (requested !== null) {
    return { processing: requested, mismatched: recorded.filter((r) => r.recorded !== requested) };
  }
  const kinds = [...new Set(recorded.map((r) => r.recorded))];
  if (kinds.length > 1) {
    const list = recorded.map((r) => `${r.name}: ${r.recorded}`).join(', ');
    throw new UserError(
      `--processing: the SAEs were trained on differently processed models (${list}); evaluate them in separate runs, or give --processing to evaluate all on one`,
    );
  }
  return { processing: kinds[0] ?? 'none', mismatched: [] };
}
