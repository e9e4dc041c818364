/**
 * Architecture names as written to cfg.json. SAELens's inference classes cover `standard`, `topk`,
 * `jumprelu`, `gated`, `transcoder`, `skip_transcoder` and `jumprelu_transcoder`; batchtopk SAEs are saved
 * as `jumprelu`. Transcoders of the other encoders get saeflow's names (`topk_transcoder`,
 * `gated_skip_transcoder`, ...), which SAELens does not load.
 */
export type EncoderKind = 'standard' | 'topk' | 'jumprelu' | 'gated';

export interface SavedArchitecture {
  encoder: EncoderKind;
  transcoder: boolean;
  skip: boolean;
}

export function savedArchitectureName(a: SavedArchitecture): string {
  if (!a.transcoder) return a.encoder;
  const prefix = a.encoder === 'standard' ? '' : `${a.encoder}_`;
  return `${prefix}${a.skip ? 'skip_' : ''}transcoder`;
}

const KNOWN: ReadonlyMap<string, SavedArchitecture> = new Map(
  (['standard', 'topk', 'jumprelu', 'gated'] as const).flatMap((encoder) =>
    [
      { encoder, transcoder: false, skip: false },
      { encoder, transcoder: true, skip: false },
      { encoder, transcoder: true, skip: true },
    ].map((a) => [savedArchitectureName(a), a] as const),
  ),
);

export function parseSavedArchitecture(name: string): SavedArchitecture | undefined {
  return KNOWN.get(name);
}

export function knownSavedArchitectures(): string[] {
  return [...KNOWN.keys()];
}
