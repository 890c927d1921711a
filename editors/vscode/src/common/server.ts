/**
 * Starting, stopping and restarting the language server, and its state as the UI shows
 * it (starting / running / failed: not installed, crashed, start failed).
 *
 * The language client itself comes from a {@link ClientFactory} (the real one wraps
 * `vscode-languageclient`, see languageClient.ts), so this logic is tested with a fake.
 * Handlers registered here survive restarts: they are attached to every new client.
 */

import { describeError, type Logger } from './logging';
import { type Disposable, Emitter } from './events';
import { NotInstalledError, type ServerCommand } from './settings';
import { PROTOCOL_VERSION, type ServerConfiguration } from '../protocol';

/** The standard LSP notification that carries a changed configuration. */
export const DID_CHANGE_CONFIGURATION = 'workspace/didChangeConfiguration';

/** What the extension needs from a language client. */
export interface ServerClient {
  start(): Promise<void>;
  stop(): Promise<void>;
  sendRequest<R>(method: string, params: unknown, token?: CancellationLike): Promise<R>;
  sendNotification(method: string, params: unknown): Promise<void>;
  onNotification(method: string, handler: (params: unknown) => void): Disposable;
  onRequest(method: string, handler: (params: unknown, token: CancellationLike) => Promise<unknown>): Disposable;
  /** `capabilities.experimental.pygent.protocolVersion` from `initialize`, once started. */
  serverProtocolVersion(): unknown;
}

/** `vscode.CancellationToken`'s shape, without importing vscode. */
export interface CancellationLike {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => void): Disposable;
}

export interface Launch {
  command: ServerCommand;
  env: Record<string, string>;
  cwd: string | undefined;
  /**
   * The server's configuration as the settings say now: sent as
   * `initializationOptions.pygent` and as the answer to `workspace/configuration`.
   */
  configuration: () => ServerConfiguration;
}

export interface ClientHooks {
  /** The server process ended without being asked to. */
  onUnexpectedClose(): void;
}

export type ClientFactory = (launch: Launch, hooks: ClientHooks) => ServerClient;

export type ServerState =
  | { kind: 'stopped' }
  | { kind: 'starting' }
  | { kind: 'running' }
  | { kind: 'failed'; reason: 'notInstalled' | 'crashed' | 'startFailed'; message: string };

export class ServerNotRunningError extends Error {
  constructor() {
    super('The Pygent server is not running.');
    this.name = 'ServerNotRunningError';
  }
}

type NotificationHandler = (params: unknown) => void;
type RequestHandler = (params: unknown, token: CancellationLike) => Promise<unknown>;

/** Crashes within this window count towards {@link MAX_QUICK_CRASHES}. */
const CRASH_WINDOW_MS = 3 * 60_000;

export class ServerManager {
  private client: ServerClient | undefined;
  private current: ServerState = { kind: 'stopped' };
  private readonly notificationHandlers = new Map<string, NotificationHandler>();
  private readonly requestHandlers = new Map<string, RequestHandler>();
  private readonly stateEmitter = new Emitter<ServerState>();
  private readonly crashes: number[] = [];
  /** Serialises start/stop/restart so two clicks never start two servers. */
  private queue: Promise<void> = Promise.resolve();
  /** Bumped by every start/stop; a late close event of an older client is ignored. */
  private generation = 0;

  readonly onDidChangeState = this.stateEmitter.event;

  constructor(
    private readonly factory: ClientFactory,
    private readonly resolveLaunch: () => Promise<Launch>,
    private readonly log: Logger,
  ) {}

  get state(): ServerState {
    return this.current;
  }

  get isRunning(): boolean {
    return this.current.kind === 'running';
  }

  /** How many times the server died unexpectedly in the last few minutes. */
  get recentCrashes(): number {
    const since = Date.now() - CRASH_WINDOW_MS;
    return this.crashes.filter((t) => t >= since).length;
  }

  private setState(state: ServerState): void {
    this.current = state;
    this.stateEmitter.fire(state);
  }

  /** Registers a handler for a server notification, on this and every later client. */
  onNotification(method: string, handler: NotificationHandler): void {
    this.notificationHandlers.set(method, handler);
    this.client?.onNotification(method, handler);
  }

  /** Registers a handler for a server -> client request, on this and every later client. */
  onRequest(method: string, handler: RequestHandler): void {
    this.requestHandlers.set(method, handler);
    this.client?.onRequest(method, handler);
  }

  start(): Promise<void> {
    return this.enqueue(() => this.doStart());
  }

  stop(): Promise<void> {
    return this.enqueue(() => this.doStop());
  }

  restart(): Promise<void> {
    return this.enqueue(async () => {
      await this.doStop();
      await this.doStart();
    });
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    const next = this.queue.then(step, step);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async doStart(): Promise<void> {
    if (this.client) return;
    const generation = ++this.generation;
    this.setState({ kind: 'starting' });
    let launch: Launch;
    try {
      launch = await this.resolveLaunch();
    } catch (err) {
      const reason = err instanceof NotInstalledError ? 'notInstalled' : 'startFailed';
      this.log.error(describeError(err));
      this.setState({ kind: 'failed', reason, message: describeError(err) });
      return;
    }
    this.log.info(`Starting ${launch.command.command} ${launch.command.args.join(' ')} --stdio`);
    const client = this.factory(launch, {
      onUnexpectedClose: () => this.handleCrash(generation),
    });
    for (const [method, handler] of this.notificationHandlers) client.onNotification(method, handler);
    for (const [method, handler] of this.requestHandlers) client.onRequest(method, handler);
    this.client = client;
    try {
      await client.start();
    } catch (err) {
      if (generation !== this.generation) return;
      this.client = undefined;
      const message = describeError(err);
      const missing = /ENOENT|not found|No module named/i.test(message);
      this.log.error(`The Pygent server did not start: ${message}`);
      this.setState({
        kind: 'failed',
        reason: missing ? 'notInstalled' : 'startFailed',
        message: missing
          ? `Could not run ${launch.command.command}: ${message}. Check that Pygent is installed ("pip install pygent") or set "pygent.serverPath".`
          : `The Pygent server did not start: ${message}`,
      });
      try {
        await client.stop();
      } catch {
        // It never ran; stopping is only to release the process if there is one.
      }
      return;
    }
    if (generation !== this.generation) return;
    const version = client.serverProtocolVersion();
    if (version !== PROTOCOL_VERSION) {
      // Talking on would mean misreading every payload: say which side to update.
      const message =
        typeof version === 'number'
          ? `The Pygent server speaks editor protocol ${version}; this extension speaks ${PROTOCOL_VERSION}. Update ${version > PROTOCOL_VERSION ? 'the extension' : 'Pygent'}.`
          : `${launch.command.command} did not announce the Pygent editor protocol: is it Pygent's language server?`;
      this.log.error(message);
      this.client = undefined;
      await client.stop().catch(() => undefined);
      this.setState({ kind: 'failed', reason: 'startFailed', message });
      return;
    }
    this.setState({ kind: 'running' });
  }

  private handleCrash(generation: number): void {
    if (generation !== this.generation) return;
    this.crashes.push(Date.now());
    this.client = undefined;
    this.log.error('The Pygent server stopped unexpectedly.');
    this.setState({
      kind: 'failed',
      reason: 'crashed',
      message: 'The Pygent server stopped unexpectedly. Its sessions ended; the conversations are kept.',
    });
  }

  private async doStop(): Promise<void> {
    const client = this.client;
    this.generation++;
    this.client = undefined;
    if (client) {
      try {
        await client.stop();
      } catch (err) {
        // A server that already died cannot be stopped cleanly; that is fine.
        this.log.warn(`Stopping the server: ${describeError(err)}`);
      }
    }
    if (this.current.kind !== 'stopped') this.setState({ kind: 'stopped' });
  }

  /** Sends a request; throws {@link ServerNotRunningError} when there is no server. */
  async request<R>(method: string, params: unknown, token?: CancellationLike): Promise<R> {
    const client = this.client;
    if (!client || this.current.kind !== 'running') throw new ServerNotRunningError();
    return client.sendRequest<R>(method, params, token);
  }

  /**
   * Sends the changed configuration to the running server (`workspace/didChangeConfiguration`
   * with `settings.pygent`); false when no server runs (the next one starts with it).
   */
  async updateConfiguration(configuration: ServerConfiguration): Promise<boolean> {
    const client = this.client;
    if (!client || this.current.kind !== 'running') return false;
    await client.sendNotification(DID_CHANGE_CONFIGURATION, { settings: { pygent: configuration } });
    return true;
  }

  /** Stops the server for good (extension shutdown). */
  async shutdown(): Promise<void> {
    await this.stop();
    this.stateEmitter.dispose();
  }
}
