/**
 * A static file server for one folder and its sub-folders, on 127.0.0.1: what the explorer page needs
 * (browsers run neither ES modules nor fetch from file:// pages), and what saeflow-serve runs on a whole
 * evaluation run (report.html and explorer/<sae>/). What it may give out is decided by served-path.ts.
 *
 * Every answer carries the cross-origin-isolation headers: with them the browser gives the page
 * SharedArrayBuffer, which onnxruntime-web needs to run WebAssembly on several threads. It records every
 * path asked for, so a test can see that a page requests nothing else.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { OutgoingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { servedFile } from './served-path.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.md': 'text/markdown; charset=utf-8',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.png': 'image/png',
};

/** Cross-origin isolation (COOP + COEP) for WebAssembly threads; CORP lets isolated pages load our files. */
export const ISOLATION_HEADERS: OutgoingHttpHeaders = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
};

const PLAIN_HEADERS: OutgoingHttpHeaders = {
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
};
const COMMON_HEADERS: OutgoingHttpHeaders = { ...ISOLATION_HEADERS, ...PLAIN_HEADERS };

export interface StaticServer {
  /** `http://127.0.0.1:PORT/` */
  url: string;
  /** The folder served. */
  dir: string;
  /** Paths requested, in order, with the status answered. */
  requests: Array<{ path: string; status: number }>;
  close(): Promise<void>;
}

function decodePath(url: string | undefined): string | null {
  try {
    return decodeURIComponent(new URL(url ?? '/', 'http://localhost').pathname);
  } catch {
    return null; // a malformed %-escape
  }
}

export interface ServeOptions {
  /** 0 (default): any free port. */
  port?: number;
  /**
   * Send the cross-origin-isolation headers (default true). Off, the server is like any plain static
   * server, on which the page runs one thread: what a test of that case needs.
   */
  isolate?: boolean;
}

export async function serveFolder(dir: string, options: ServeOptions = {}): Promise<StaticServer> {
  const { port = 0, isolate = true } = options;
  const common = isolate ? COMMON_HEADERS : PLAIN_HEADERS;
  const requests: StaticServer['requests'] = [];
  const server = createServer((req, res) => {
    const urlPath = decodePath(req.url);
    const answer = (status: number, headers: OutgoingHttpHeaders = {}) => {
      requests.push({ path: urlPath ?? String(req.url), status });
      res.writeHead(status, { ...common, 'content-type': 'text/plain', ...headers }).end(String(status));
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(405, { allow: 'GET, HEAD' });
    if (urlPath === null) return answer(400);
    void (async () => {
      const file = await servedFile(dir, urlPath);
      if (file === null) {
        // A folder named without its trailing slash: relative links inside its page need the slash.
        if (!urlPath.endsWith('/') && (await servedFile(dir, `${urlPath}/`)) !== null) {
          return answer(301, { location: `${new URL(req.url ?? '/', 'http://localhost').pathname}/` });
        }
        return answer(404);
      }
      const size = (await stat(file)).size;
      requests.push({ path: urlPath, status: 200 });
      res.writeHead(200, {
        ...common,
        'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        'content-length': size,
      });
      if (req.method === 'HEAD') res.end();
      else createReadStream(file).pipe(res);
    })().catch(() => {
      if (!res.headersSent) answer(500);
      else res.destroy();
    });
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
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        // Chromium keeps connections alive; close would otherwise wait for them to time out.
        server.closeAllConnections();
      }),
  };
}
