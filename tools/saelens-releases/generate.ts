/**
 * Writes src/sae-formats/saelens-releases.json from SAELens's public release list, `sae_lens/pretrained_saes.yaml`
 * (read as data; nothing of SAELens's code is used or kept). For each release it keeps what resolving
 * `RELEASE/SAE_ID` needs: the hub repository, the model, SAELens's conversion function (which names the file
 * format), the config overrides, and each SAE's id, path and norm_scaling_factor.
 *
 *   npx tsx tools/saelens-releases/generate.ts PRETRAINED_SAES_YAML --source 'jbloomAus/SAELens@<commit> (<version>)'
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const OUT = fileURLToPath(new URL('../../src/sae-formats/saelens-releases.json', import.meta.url));

interface YamlSae {
  id: string;
  path: string;
  norm_scaling_factor?: number;
}
interface YamlRelease {
  repo_id: string;
  model: string;
  conversion_func: string | null;
  config_overrides?: Record<string, unknown> | null;
  saes: YamlSae[];
}

function main(): void {
  const args = process.argv.slice(2);
  const sourceAt = args.indexOf('--source');
  const source = sourceAt >= 0 ? args[sourceAt + 1] : undefined;
  const yamlFile = args.find((a, i) => !a.startsWith('--') && i !== sourceAt + 1);
  if (!yamlFile || !source) {
    console.error('usage: generate.ts PRETRAINED_SAES_YAML --source "owner/repo@commit (version)"');
    process.exit(2);
  }
  const doc = parse(readFileSync(yamlFile, 'utf8')) as Record<string, YamlRelease>;
  const releases: Record<string, unknown> = {};
  for (const name of Object.keys(doc).sort()) {
    const r = doc[name]!;
    if (typeof r.repo_id !== 'string' || !Array.isArray(r.saes)) {
      throw new Error(`${yamlFile}: release ${name} has no repo_id or saes`);
    }
    releases[name] = {
      repo_id: r.repo_id,
      model: r.model,
      conversion_func: r.conversion_func ?? null,
      ...(r.config_overrides ? { config_overrides: r.config_overrides } : {}),
      // [id, path] with path left out when it equals the id, then norm_scaling_factor where SAELens has one.
      saes: r.saes.map((s) => {
        const entry: unknown[] = [s.id];
        if (s.path !== s.id || s.norm_scaling_factor !== undefined) entry.push(s.path);
        if (s.norm_scaling_factor !== undefined) entry.push(s.norm_scaling_factor);
        return entry;
      }),
    };
  }
  const out = {
    source: {
      file: 'sae_lens/pretrained_saes.yaml',
      from: source,
      generator: 'tools/saelens-releases/generate.ts',
    },
    releases,
  };
  // One release per line keeps diffs readable without prettier expanding 4,500 entries.
  const lines = Object.entries(releases).map(([k, v]) => `    ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  const text = `{\n  "source": ${JSON.stringify(out.source)},\n  "releases": {\n${lines.join(',\n')}\n  }\n}\n`;
  JSON.parse(text);
  writeFileSync(OUT, text);
  const count = Object.values(releases).reduce<number>(
    (n, r) => n + (r as { saes: unknown[] }).saes.length,
    0,
  );
  console.log(`${path.relative(process.cwd(), OUT)}: ${lines.length} releases, ${count} SAEs`);
}

main();
