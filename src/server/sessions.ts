// Server-side state of LMDeploy interactive sessions (/v1/chat/interactive): each session's token
// history (every previous prompt + output token, which the engine's prefix cache turns back into
// KV) and the chat messages behind it (to render the next turn's template delta). Bounded in
// number (least-recently-used idle sessions are evicted; if all are busy, new ones are refused)
// and in idle time (a reaper drops sessions unused for sessionIdleSeconds).
import { randomInt } from 'node:crypto';
import type { ChatMessage } from '../common/types.js';
import { ApiError } from './errors.js';
import type { Logger } from '../common/log.js';

export interface Session {
  readonly id: number;
  tokenIds: number[];
  messages: ChatMessage[];
  /** Set while a turn runs: aborting it cancels the turn; `done` settles when the turn has ended. */
  running: { controller: AbortController; done: Promise<void> } | null;
  lastUsedMs: number;
}

export interface SessionStoreOptions {
  maxSessions: number;
  idleSeconds: number;
}

export class SessionStore {
  /** Map iteration order is insertion order; touching a session re-inserts it, so the first is the LRU. */
  private readonly sessions = new Map<number, Session>();
  private readonly reaper: NodeJS.Timeout;

  constructor(
    private readonly options: SessionStoreOptions,
    private readonly log: Logger,
  ) {
    const periodMs = Math.max(1000, Math.min(options.idleSeconds * 500, 30_000));
    this.reaper = setInterval(() => this.reap(), periodMs);
    this.reaper.unref();
  }

  get size(): number {
    return this.sessions.size;
  }

  get(id: number): Session | undefined {
    return this.sessions.get(id);
  }

  /** An unused positive id for session_id -1 (LMDeploy hands out ids the same way). */
  newId(): number {
    for (;;) {
      const id = randomInt(1, 2 ** 31);
      if (!this.sessions.has(id)) return id;
    }
  }

  /** The session with this id, created when missing; marks it most recently used. */
  open(id: number): Session {
    let session = this.sessions.get(id);
    if (session) this.sessions.delete(id);
    else {
      this.makeRoom();
      session = { id, tokenIds: [], messages: [], running: null, lastUsedMs: Date.now() };
    }
    session.lastUsedMs = Date.now();
    this.sessions.set(id, session);
    return session;
  }

  /** Ends a session (its running turn, if any, is cancelled). */
  end(id: number): void {
    const session = this.sessions.get(id);
    if (!session) return;
    session.running?.controller.abort(new Error('session ended'));
    this.sessions.delete(id);
  }

  /** Cancels every running turn, waits for them to end, and forgets all sessions. */
  async close(): Promise<void> {
    clearInterval(this.reaper);
    const running = [...this.sessions.values()].flatMap((s) => (s.running ? [s.running] : []));
    for (const turn of running) turn.controller.abort(new Error('server shutting down'));
    await Promise.all(running.map((turn) => turn.done));
    this.sessions.clear();
  }

  private makeRoom(): void {
    if (this.sessions.size < this.options.maxSessions) return;
    for (const [id, session] of this.sessions) {
      if (session.running) continue;
      this.sessions.delete(id);
      this.log.info('evicted an idle session', { session: id, maxSessions: this.options.maxSessions });
      return;
    }
    throw new ApiError(
      429,
      'rate_limit_error',
      `all ${this.options.maxSessions} interactive sessions are busy; retry later or end a session`,
      'session_id',
      'too_many_sessions',
    );
  }

  private reap(): void {
    const cutoff = Date.now() - this.options.idleSeconds * 1000;
    for (const [id, session] of this.sessions) {
      if (!session.running && session.lastUsedMs < cutoff) {
        this.sessions.delete(id);
        this.log.debug('reaped an idle session', { session: id });
      }
    }
  }
}
