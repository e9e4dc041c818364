/**
 * A static file server for one folder, on 127.0.0.1: what the explorer page needs (browsers run neither ES
 * modules nor fetch from file:// pages). It serves only files directly inside the folder, and records every
 * path asked for, so a test can see that the page requests nothing else.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.png': 'image/png',
};

export interface StaticServer {
  /** `http://127.0.0.1:PORT/` */
  url: string;
  /** The folder served. */
  dir: string;
  /** Paths requested, in order, with the status answered. */
  requests: Array<{ path: string; status: number }>;
  close(): Promise<void>;
}

export async function serveFolder(dir: string, port = 0): Promise<StaticServer> {
  const requests: StaticServer['requests'] = [];
  const server = createServer((req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    const name = urlPath === '/' ? 'index.html' : urlPath.slice(1);
    const answer = (status: number) => {
      requests.push({ path: urlPath, status });
      res.writeHead(status, { 'content-type': 'text/plain' }).end(String(status));
    };
    // One level only: no sub-folders, no `..`, nothing hidden.
    if (req.method !== 'GET' || name.includes('/') || name.includes('\\') || name.startsWith('.')) {
      answer(404);
      return;
    }
    const file = path.join(dir, name);
    stat(file).then(
      (s) => {
        if (!s.isFile()) return answer(404);
        requests.push({ path: urlPath, status: 200 });
        res.writeHead(200, {
          'content-type': TYPES[path.extname(name)] ?? 'application/octet-stream',
          'content-length': s.size,
          'cache-control': 'no-store',
        });
        createReadStream(file).pipe(res);
      },
      () => answer(404),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}/`,
    dir,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
