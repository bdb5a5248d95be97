import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

/**
 * A Hub-shaped HTTP server on 127.0.0.1 for the download tests: the endpoints `@huggingface/hub`
 * and the downloader call (`/api/models/{repo}/revision/{rev}`, `/api/models/{repo}/tree/{rev}`,
 * `/{repo}/resolve/{rev}/{file}` with `Range`), every request logged, and per-file faults.
 */

/** What the server does wrong for one file's next download(s). */
export interface Fault {
  /** Send this many bytes (after a full Content-Length), then drop the connection. */
  dropAfter?: number;
  /** Serve only the first this-many bytes, as a complete response. */
  truncateTo?: number;
  /** Serve the file with one byte changed. */
  corrupt?: boolean;
  /** Answer 404 although the tree lists the file. */
  missing?: boolean;
  /** Answer a Range request with the whole file (200). */
  ignoreRange?: boolean;
  /** How many downloads the fault applies to (default 1). */
  times?: number;
}

/** A repository the server holds: one commit, with branch/tag names pointing at it. */
export interface FakeRepo {
  commit: string;
  refs: string[];
  files: Map<string, Uint8Array>;
}

/** An answer: status, headers, body (cut off after `dropAfter` bytes when set). */
interface Reply {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
  dropAfter?: number;
}

/** One request the server saw. */
export interface LoggedRequest {
  method: string;
  path: string;
  range: string | null;
  /** The Authorization header, when sent. */
  auth?: string;
}

const gitOid = (b: Uint8Array): string =>
  createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** The files of a fixture directory, by name. */
export function filesOf(dir: string): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>();
  for (const f of readdirSync(dir).sort()) m.set(f, new Uint8Array(readFileSync(join(dir, f))));
  return m;
}

/** The fake Hub. */
export class FakeHub {
  readonly repos = new Map<string, FakeRepo>();
  readonly faults = new Map<string, Fault>();
  readonly requests: LoggedRequest[] = [];
  private server: Server | null = null;
  url = '';

  /** Adds a repository (a commit made of `files`, reachable as `refs`). */
  add(repo: string, files: Map<string, Uint8Array>, refs: string[] = ['main']): FakeRepo {
    const commit = createHash('sha1').update(repo).update(String(files.size)).digest('hex');
    const r = { commit, refs, files };
    this.repos.set(repo, r);
    return r;
  }

  /** Starts listening on 127.0.0.1 (a free port). */
  async start(): Promise<string> {
    const server = createServer((req, res) => this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this.url;
  }

  /** Stops it (open connections closed). */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Requests whose path starts with `prefix`. */
  count(prefix = '/'): number {
    return this.requests.filter((r) => r.path.startsWith(prefix)).length;
  }

  private find(repo: string, rev: string): FakeRepo | null {
    const r = this.repos.get(repo);
    return r && (r.commit === rev || r.refs.includes(rev)) ? r : null;
  }

  private json(status: number, body: unknown, headers: Record<string, string> = {}): Reply {
    return {
      status,
      headers: { 'Content-Type': 'application/json', ...headers },
      body: new TextEncoder().encode(JSON.stringify(body)),
    };
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const reply = this.route(req);
    res.writeHead(reply.status, reply.headers);
    if (reply.dropAfter !== undefined)
      res.write(reply.body.subarray(0, reply.dropAfter), () => res.socket?.destroy());
    else res.end(reply.body);
  }

  private route(req: IncomingMessage): Reply {
    const u = new URL(req.url ?? '/', 'http://x');
    const path = decodeURIComponent(u.pathname);
    const auth = req.headers.authorization;
    this.requests.push({
      method: req.method ?? '',
      path,
      range: req.headers.range ?? null,
      ...(auth ? { auth } : {}),
    });
    let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(path);
    if (m) {
      const r = this.find(m[1], m[2]);
      if (!r) return this.json(404, { error: 'Repository not found' }, { 'X-Error-Code': 'RepoNotFound' });
      return this.json(200, {
        _id: 'x',
        id: m[1],
        sha: r.commit,
        private: false,
        lastModified: '2026-01-01T00:00:00.000Z',
        siblings: [...r.files.keys()].map((rfilename) => ({ rfilename })),
      });
    }
    m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(path);
    if (m) {
      const r = this.find(m[1], m[2]);
      if (!r) return this.json(404, { error: 'Repository not found' });
      return this.json(
        200,
        [...r.files].map(([p, b]) =>
          p.endsWith('.safetensors')
            ? {
                type: 'file',
                path: p,
                size: b.length,
                oid: gitOid(b),
                lfs: { oid: sha256(b), size: b.length, pointerSize: 134 },
              }
            : { type: 'file', path: p, size: b.length, oid: gitOid(b) },
        ),
      );
    }
    m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (!m) return this.json(404, { error: 'no such endpoint' });
    const r = this.find(m[1], m[2]);
    const file = r?.files.get(m[3]);
    const fault = this.faults.get(m[3]);
    if (fault) {
      fault.times = (fault.times ?? 1) - 1;
      if (fault.times <= 0) this.faults.delete(m[3]);
    }
    if (!file || fault?.missing)
      return this.json(404, { error: 'Entry not found' }, { 'X-Error-Code': 'EntryNotFound' });
    let body = file;
    if (fault?.corrupt) {
      body = file.slice();
      body[body.length >> 1] ^= 0xff;
    }
    if (fault?.truncateTo !== undefined) body = body.subarray(0, fault.truncateTo);
    let status = 200;
    const headers: Record<string, string> = {
      'Content-Type': 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      ETag: `"${gitOid(file)}"`,
    };
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && !fault?.ignoreRange) {
      const start = Number(range[1]);
      const end = range[2] === '' ? body.length - 1 : Math.min(Number(range[2]), body.length - 1);
      if (start >= body.length)
        return {
          status: 416,
          headers: { 'Content-Range': `bytes */${body.length}` },
          body: new Uint8Array(0),
        };
      headers['Content-Range'] = `bytes ${start}-${end}/${body.length}`;
      body = body.subarray(start, end + 1);
      status = 206;
    }
    headers['Content-Length'] = String(body.length);
    return {
      status,
      headers,
      body,
      ...(fault?.dropAfter !== undefined ? { dropAfter: fault.dropAfter } : {}),
    };
  }
}
