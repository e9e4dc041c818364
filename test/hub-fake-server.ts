/**
 * A tiny stand-in for the Hugging Face hub on 127.0.0.1, for tests: the resolve endpoint (with the hub's
 * headers, LFS redirects to a "CDN" on another host name and relative redirects for renamed repositories), the tree API
 * with Link-header pagination, HTTP Range requests, and injectable faults.
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeFile {
  content: Uint8Array;
  /** Stored with git-lfs: served through a redirect, with X-Linked-Etag = sha256. */
  lfs?: boolean;
}

export interface FakeRepo {
  type: 'model' | 'dataset';
  id: string;
  /** Branch/tag name -> commit. */
  refs: Record<string, string>;
  /** Commit -> path -> file. */
  commits: Record<string, Record<string, FakeFile>>;
  /** Old ids that redirect here, as the hub does for renamed repositories. */
  renamedFrom?: string[];
}

export interface Faults {
  /** Drop the connection after `bytes` body bytes, for the next `times` GETs of this repository path. */
  cut: Map<string, { bytes: number; times: number }>;
  /** Serve these paths with one byte changed (same length). */
  corrupt: Set<string>;
  /** Answer Range requests with the whole file (200), as some proxies do. */
  ignoreRange: boolean;
  /** Entries per tree API page. */
  treePageSize: number;
  /** Override headers of resolve responses for a path (a hostile or broken server). */
  headers: Map<string, Record<string, string>>;
}

export interface LoggedRequest {
  method: string;
  url: string;
  range?: string;
  authorization?: string;
}

export interface FakeHub {
  endpoint: string;
  log: LoggedRequest[];
  faults: Faults;
  close(): Promise<void>;
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The git blob id, which the hub sends as the ETag of files not stored with LFS. */
export function gitBlobSha1(data: Uint8Array): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

function fail(res: ServerResponse, status: number, code?: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, {
    ...(code ? { 'x-error-code': code } : {}),
    ...extra,
    'content-type': 'application/json',
  });
  res.end(JSON.stringify({ error: code ?? `HTTP ${status}` }));
}

export async function startFakeHub(repos: FakeRepo[]): Promise<FakeHub> {
  const faults: Faults = {
    cut: new Map(),
    corrupt: new Set(),
    ignoreRange: false,
    treePageSize: 100,
    headers: new Map(),
  };
  const log: LoggedRequest[] = [];
  let origin = '';
  // The real CDN is another host; 'localhost' is a different host name for the same loopback server.
  let cdnOrigin = '';

  const findRepo = (type: string, id: string) => repos.find((r) => r.type === type && r.id === id);
  const commitOf = (repo: FakeRepo, rev: string) => repo.refs[rev] ?? (repo.commits[rev] ? rev : undefined);

  function sendBody(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    content: Uint8Array,
    headers: Record<string, string>,
  ): void {
    let body = content;
    if (faults.corrupt.has(path) && body.length > 0) {
      body = Uint8Array.from(body);
      body[body.length >> 1]! ^= 0xff;
    }
    let status = 200;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range && !faults.ignoreRange) {
      const start = Number(range[1]);
      if (start >= body.length) {
        fail(res, 416, undefined, { 'content-range': `bytes */${body.length}` });
        return;
      }
      headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
      body = body.subarray(start);
      status = 206;
    }
    res.writeHead(status, { ...headers, 'content-length': String(body.length), 'accept-ranges': 'bytes' });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const cut = faults.cut.get(path);
    if (cut && cut.times > 0) {
      cut.times--;
      res.write(body.subarray(0, cut.bytes), () => res.destroy());
      return;
    }
    res.end(body);
  }

  function resolve(req: IncomingMessage, res: ServerResponse, type: string, id: string, rest: string): void {
    const renamed = repos.find((r) => r.type === type && r.renamedFrom?.includes(id));
    if (renamed) {
      const prefix = type === 'dataset' ? '/datasets' : '';
      res.writeHead(307, { location: `${prefix}/${renamed.id}/resolve/${rest}` });
      res.end();
      return;
    }
    const repo = findRepo(type, id);
    if (!repo) return fail(res, 404, 'RepoNotFound');
    const [rawRev, ...rawPath] = rest.split('/');
    const commit = commitOf(repo, decodeURIComponent(rawRev!));
    if (!commit) return fail(res, 404, 'RevisionNotFound');
    const path = rawPath.map(decodeURIComponent).join('/');
    const file = repo.commits[commit]![path];
    if (!file) return fail(res, 404, 'EntryNotFound', { 'x-repo-commit': commit });
    const override = faults.headers.get(path) ?? {};
    if (file.lfs) {
      const sha = sha256Hex(file.content);
      res.writeHead(302, {
        location: `${cdnOrigin}/cdn/${sha}`,
        'x-repo-commit': commit,
        'x-linked-etag': `"${sha}"`,
        'x-linked-size': String(file.content.length),
        etag: `"${gitBlobSha1(Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha}\n`))}"`,
        ...override,
      });
      res.end();
      return;
    }
    sendBody(req, res, path, file.content, {
      'x-repo-commit': commit,
      etag: `"${gitBlobSha1(file.content)}"`,
      ...override,
    });
  }

  function cdn(req: IncomingMessage, res: ServerResponse, sha: string): void {
    for (const repo of repos) {
      for (const files of Object.values(repo.commits)) {
        for (const [path, file] of Object.entries(files)) {
          if (file.lfs && sha256Hex(file.content) === sha) return sendBody(req, res, path, file.content, {});
        }
      }
    }
    fail(res, 404);
  }

  function tree(res: ServerResponse, url: URL, type: string, id: string, rawRev: string): void {
    const repo = findRepo(type, id);
    if (!repo) return fail(res, 404, 'RepoNotFound');
    const commit = commitOf(repo, decodeURIComponent(rawRev));
    if (!commit) return fail(res, 404, 'RevisionNotFound');
    const entries: object[] = [];
    const dirs = new Set<string>();
    for (const [path, file] of Object.entries(repo.commits[commit]!).sort(([a], [b]) => (a < b ? -1 : 1))) {
      const parts = path.split('/');
      for (let i = 1; i < parts.length; i++) {
        const dir = parts.slice(0, i).join('/');
        if (!dirs.has(dir)) {
          dirs.add(dir);
          entries.push({ type: 'directory', oid: '0'.repeat(40), size: 0, path: dir });
        }
      }
      entries.push({
        type: 'file',
        oid: gitBlobSha1(file.content),
        size: file.content.length,
        path,
        ...(file.lfs
          ? { lfs: { oid: sha256Hex(file.content), size: file.content.length, pointerSize: 130 } }
          : {}),
      });
    }
    const cursor = Number(url.searchParams.get('cursor') ?? 0);
    const page = entries.slice(cursor, cursor + faults.treePageSize);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (cursor + faults.treePageSize < entries.length) {
      const next = new URL(url.href);
      next.searchParams.set('cursor', String(cursor + faults.treePageSize));
      headers.link = `<${next.href}>; rel="next"`;
    }
    res.writeHead(200, headers);
    res.end(JSON.stringify(page));
  }

  const server = createServer((req, res) => {
    log.push({
      method: req.method ?? '',
      url: req.url ?? '',
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
    });
    const url = new URL(req.url ?? '/', origin);
    const path = url.pathname;
    let m = /^\/api\/(model|dataset)s\/(.+)\/tree\/([^/]+)$/.exec(path);
    if (m) return tree(res, url, m[1]!, m[2]!, m[3]!);
    m = /^\/cdn\/([0-9a-f]{64})$/.exec(path);
    if (m) return cdn(req, res, m[1]!);
    m = /^\/(datasets\/)?(.+?)\/resolve\/(.+)$/.exec(path);
    if (m) return resolve(req, res, m[1] ? 'dataset' : 'model', m[2]!, m[3]!);
    fail(res, 404);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const port = (server.address() as AddressInfo).port;
  origin = `http://127.0.0.1:${port}`;
  cdnOrigin = `http://localhost:${port}`;
  return {
    endpoint: origin,
    log,
    faults,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}
