/**
 * The static server behind the explorer tests and saeflow-serve: it gives out plain files inside its folder
 * and sub-folders with the cross-origin-isolation headers, and nothing else: no `..` (raw or
 * percent-encoded), no hidden names, no symlink leading outside. Requests are sent raw (node:http keeps
 * the path as written, where fetch would normalize `..` away before it left).
 */
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPages, serve } from '../src/explorer/serve-cli.js';
import { pathSegments, servedFile } from '../src/explorer/served-path.js';
import { serveFolder } from '../src/explorer/static-server.js';
import type { StaticServer } from '../src/explorer/static-server.js';

let base: string;
let root: string;
let server: StaticServer;

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'saeflow-serve-'));
  root = path.join(base, 'run');
  await mkdir(path.join(root, 'explorer', 'topk-k8'), { recursive: true });
  await mkdir(path.join(root, '.git'), { recursive: true });
  await mkdir(path.join(root, 'saes'), { recursive: true });
  await writeFile(path.join(root, 'report.html'), '<p>report</p>');
  await writeFile(path.join(root, 'explorer', 'explorer.js'), 'export {};');
  await writeFile(path.join(root, 'explorer', 'topk-k8', 'explorer.html'), '<p>explorer</p>');
  await writeFile(path.join(root, 'explorer', 'topk-k8', 'model.onnx'), new Uint8Array([1, 2, 3]));
  await writeFile(path.join(root, '.git', 'config'), 'secret');
  await writeFile(path.join(root, '.env'), 'TOKEN=secret');
  await writeFile(path.join(base, 'outside.txt'), 'outside');
  await symlink(path.join(base, 'outside.txt'), path.join(root, 'leak.txt'));
  await symlink(base, path.join(root, 'parent'));
  await symlink(path.join(root, 'report.html'), path.join(root, 'alias.html'));
  server = await serveFolder(root);
});

afterAll(async () => {
  await server?.close();
  if (base) await rm(base, { recursive: true, force: true });
});

function get(
  rawPath: string,
  method = 'GET',
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const { port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: rawPath, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('serveFolder', () => {
  it('serves files in sub-folders with the cross-origin-isolation headers and their types', async () => {
    const r = await get('/explorer/topk-k8/explorer.html');
    expect(r.status).toBe(200);
    expect(r.body).toBe('<p>explorer</p>');
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.headers['cross-origin-opener-policy']).toBe('same-origin');
    expect(r.headers['cross-origin-embedder-policy']).toBe('require-corp');
    expect(r.headers['cross-origin-resource-policy']).toBe('same-origin');
    expect((await get('/explorer/explorer.js')).headers['content-type']).toBe(
      'text/javascript; charset=utf-8',
    );
    const head = await get('/explorer/topk-k8/model.onnx', 'HEAD');
    expect([head.status, head.headers['content-length'], head.body]).toEqual([200, '3', '']);
  });

  it('opens a folder at its page, and adds the slash a folder URL needs', async () => {
    expect((await get('/')).body).toBe('<p>report</p>');
    expect((await get('/explorer/topk-k8/')).body).toBe('<p>explorer</p>');
    const bare = await get('/explorer/topk-k8');
    expect([bare.status, bare.headers['location']]).toEqual([301, '/explorer/topk-k8/']);
    // A folder with no page in it is not listed.
    expect((await get('/saes/')).status).toBe(404);
    expect((await get('/saes')).status).toBe(404);
  });

  it('refuses `..` however it is spelled', async () => {
    for (const p of [
      '/../outside.txt',
      '/explorer/../../outside.txt',
      '/%2e%2e/outside.txt',
      '/..%2foutside.txt',
      '/explorer/..%2F..%2Foutside.txt',
      '/..%5coutside.txt',
      '/explorer%2f..%2f..%2foutside.txt',
    ]) {
      const r = await get(p);
      expect(r.status, p).toBe(404);
      expect(r.body, p).not.toContain('outside');
    }
    expect((await get('/%zz')).status).toBe(400);
  });

  it('refuses hidden names, and symlinks that lead outside the folder', async () => {
    for (const p of ['/.git/config', '/.env', '/explorer/.hidden', '/leak.txt', '/parent/outside.txt']) {
      const r = await get(p);
      expect(r.status, p).toBe(404);
      expect(r.body, p).not.toContain('secret');
      expect(r.body, p).not.toContain('outside');
    }
    // A link that stays inside is an ordinary name.
    expect((await get('/alias.html')).body).toBe('<p>report</p>');
  });

  it('answers only GET and HEAD, and records what was asked', async () => {
    expect((await get('/report.html', 'POST')).status).toBe(405);
    expect(server.requests).toContainEqual({ path: '/.env', status: 404 });
    expect(server.requests).toContainEqual({ path: '/explorer/topk-k8/explorer.html', status: 200 });
  });

  it('sends no isolation headers when asked not to', async () => {
    const plain = await serveFolder(root, { isolate: false });
    try {
      const r = await fetch(`${plain.url}report.html`);
      expect(r.status).toBe(200);
      expect(r.headers.get('cross-origin-embedder-policy')).toBeNull();
    } finally {
      await plain.close();
    }
  });
});

describe('served paths', () => {
  it('takes visible names only', () => {
    expect(pathSegments('/explorer/topk-k8/explorer.html')).toEqual(['explorer', 'topk-k8', 'explorer.html']);
    expect(pathSegments('/explorer/')).toEqual(['explorer', '']);
    for (const bad of ['/a//b', '/./a', '/a/..', '/.a', 'a', '/a\\b', '/a\0'])
      expect(pathSegments(bad), bad).toBeNull();
  });

  it('resolves to real paths inside the folder', async () => {
    expect(await servedFile(root, '/alias.html')).toBe(path.join(await realpath(root), 'report.html'));
    expect(await servedFile(root, '/leak.txt')).toBeNull();
    expect(await servedFile(root, '/missing.html')).toBeNull();
  });
});

describe('saeflow-serve', () => {
  it('prints the report and every explorer in the folder, and serves them', async () => {
    expect(await findPages(root)).toEqual({
      report: '/report.html',
      explorers: ['/explorer/topk-k8/explorer.html'],
    });
    const lines: string[] = [];
    const started = await serve([root, '--port', '0'], (l) => lines.push(l));
    try {
      expect(started).not.toBeNull();
      expect(lines[0]).toBe(`serving ${root} at ${started!.url} (cross-origin isolated; Ctrl-C stops)`);
      expect(lines.slice(1)).toEqual([
        `  report:   ${started!.url}report.html`,
        `  explorer: ${started!.url}explorer/topk-k8/explorer.html`,
      ]);
      const r = await fetch(`${started!.url}explorer/topk-k8/explorer.html`);
      expect(await r.text()).toBe('<p>explorer</p>');
      expect(r.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    } finally {
      await started?.close();
    }
  });

  it('refuses a folder that is not one, and bad options, with its usage', async () => {
    const lines: string[] = [];
    expect(await serve([path.join(base, 'nope')], (l) => lines.push(l))).toBeNull();
    expect(await serve([root, '--port', 'x'], (l) => lines.push(l))).toBeNull();
    expect(await serve([root, '--bogus'], (l) => lines.push(l))).toBeNull();
    expect(lines.filter((l) => l.includes('Usage: npx saeflow-serve'))).toHaveLength(3);
  });
});
