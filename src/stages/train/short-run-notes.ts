/**
 * Says so when an SAE trains for no more steps than its dead_feature_window: no feature can count as dead,
 * the progress line's `dead` stays 0 whatever `never fired` shows, and AuxK never starts.
 */
import { architectureOf, totalTrainingSteps, type SaeTrainingConfig } from '../../sae/index.js';

export function shortRunNotes(configs: readonly SaeTrainingConfig[]): string[] {
  return configs.flatMap((cfg) => {
    const steps = totalTrainingSteps(cfg);
    if (steps > cfg.dead_feature_window) return [];
    const auxk = architectureOf(cfg.architecture).auxK
      ? ', and AuxK, which revives dead features, never starts'
      : '';
    return [
      `SAE ${cfg.name}: ${steps} training steps, no more than dead_feature_window (${cfg.dead_feature_window}): ` +
        `no feature can count as dead${auxk}; "never fired" counts the features that have not fired yet ` +
        '(a smaller --dead_feature_window makes the window fit the run)',
    ];
  });
}
