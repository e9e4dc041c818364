/**
 * matryoshka_batchtopk SAE, as SAELens's MatryoshkaBatchTopKTrainingSAE (Bussmann et al. 2025,
 * arXiv:2503.17547): a batchtopk SAE whose nested prefixes of features each reconstruct the input alone.
 * For every width w of `matryoshka_widths` but the last (which is d_sae, the full SAE's own loss):
 *   inner_mse_loss_w = mean_b ‖a[:, :w] W_dec[:w]ᵀ + b_dec - y‖²   (a = f / ‖W_dec‖, as the full decode)
 * added to the batchtopk loss, so early features learn what later ones would otherwise absorb.
 * As in SAELens, d_sae is appended when the widths do not end with it, and widths must increase.
 * Saved as a JumpReLU, like batchtopk.
 */
import { BATCHTOPK_OPTIONS, batchSelection } from './batchtopk.js';
import { topKFamily } from './topk.js';

/** The widths with d_sae last (SAELens appends it when missing). */
export function matryoshkaLevels(widths: readonly number[], dSae: number): number[] {
  return widths[widths.length - 1] === dSae ? [...widths] : [...widths, dSae];
}

export const matryoshkaBatchTopK = topKFamily({
  name: 'matryoshka_batchtopk',
  options: { ...BATCHTOPK_OPTIONS, matryoshka_widths: { kind: { type: 'intList' }, default: [] } },
  savedEncoder: 'jumprelu',
  ...batchSelection,
  innerWidths: (cfg) => matryoshkaLevels(cfg.matryoshka_widths, cfg.d_sae).slice(0, -1),
  validate(cfg) {
    const levels = matryoshkaLevels(cfg.matryoshka_widths, cfg.d_sae);
    for (let i = 0; i < levels.length; i++) {
      const w = levels[i]!;
      if (!Number.isInteger(w) || w < 1 || w > cfg.d_sae)
        return {
          field: 'matryoshka_widths',
          message: `widths must be integers in 1..d_sae (${cfg.d_sae}), got ${w}`,
        };
      if (i > 0 && w <= levels[i - 1]!)
        return {
          field: 'matryoshka_widths',
          message: `must be strictly increasing, got ${JSON.stringify(cfg.matryoshka_widths)}`,
        };
    }
    if (cfg.skip_connection)
      return {
        field: 'skip_connection',
        message: 'matryoshka levels reconstruct without a skip connection; train without it',
      };
    return batchSelection.validate!(cfg);
  },
});
