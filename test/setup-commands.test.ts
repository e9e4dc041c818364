/**
 * The README's set-up commands are what CI runs, and they need nothing outside npm but Debian's Slurm and munge
 * (for the Slurm end-to-end test's cluster): no other apt step, no browser from the system, and an npm
 * configuration without keys npm warns about on every command.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const readme = readFileSync('README.md', 'utf8');
const ciScript = readFileSync('.ci/run', 'utf8');

/** Command lines of a shell script, without comments, `set`, `cd` and version prints. */
function commands(script: string): string[] {
  return script
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l && !l.startsWith('#') && !/^(set|cd)\s/.test(l) && !/--version$/.test(l));
}

/** Commands inside the README's ```sh blocks, comments stripped. */
function readmeCommands(): string[] {
  const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks.flatMap((b) => commands(b));
}

describe('set-up as the README tells it', () => {
  it('.ci/run runs the README commands and nothing else', () => {
    const ci = commands(ciScript);
    const fromReadme = readmeCommands();
    expect(ci.length).toBeGreaterThan(0);
    for (const c of ci) expect(fromReadme, c).toContain(c);
    for (const c of [
      'npm ci && npx run-pipeline pipelines/quickstart.ts',
      'npm test',
      'npm run typecheck',
      'npm run lint',
    ])
      expect(ci).toContain(c);
    expect(ciScript).not.toMatch(/sudo|apt install/);
    // The one apt step installs what test/slurm.test.ts's cluster needs, and runs before the tests.
    const apt = ci.filter((c) => /apt-get/.test(c));
    expect(apt).toEqual([
      'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge',
    ]);
    expect(ci.indexOf(apt[0]!)).toBeLessThan(ci.indexOf('npm test'));
  });

  it('the report browser test launches a Chromium that comes from npm, not from the system', () => {
    const test = readFileSync('test/report-browser.test.ts', 'utf8');
    expect(test).toContain("from '@sparticuz/chromium'");
    expect(test).not.toContain('/usr/bin/chromium');
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as {
      devDependencies: Record<string, string>;
    };
    expect(pkg.devDependencies['@sparticuz/chromium']).toMatch(/^\d/);
    // The package must install on Node 20, which this project supports.
    const chromiumPkg = JSON.parse(readFileSync('node_modules/@sparticuz/chromium/package.json', 'utf8')) as {
      engines: { node: string };
    };
    expect(chromiumPkg.engines.node).toBe('>=20.11.0');
  });

  it('npm reads the project configuration without warnings, and dependency install scripts stay off', () => {
    const run = spawnSync('npm', ['config', 'get', 'ignore-scripts'], { encoding: 'utf8' });
    expect(run.status).toBe(0);
    expect(run.stdout.trim()).toBe('true');
    expect(run.stderr).not.toMatch(/Unknown (project|user|env) config/);
    expect(run.stderr).toBe('');
  });

  it('onnxruntime-node loads from what its package ships, with its install script never run', () => {
    const out = execFileSync(
      process.execPath,
      ['-e', "const ort=require('onnxruntime-node'); console.log(typeof ort.InferenceSession.create)"],
      { encoding: 'utf8' },
    );
    expect(out.trim()).toBe('function');
  });
});
