/**
 * The real parts behind the extension, without VS Code: `pygent lsp --stdio` spawned
 * as the language client would, the scripted OpenAI-compatible server from
 * tests/openai_server.py, and a JSON-RPC connection standing in for the language client
 * (including its `workspace/applyEdit` handling).
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createMessageConnection, type MessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import type { ServerPort } from '../../src/chat/controller';
import { Emitter } from '../../src/common/events';
import type { ServerState } from '../../src/common/server';
import type { ServerConfiguration } from '../../src/protocol';

/** The repository root (editors/vscode/../..), where `python -m tests.openai_server` runs. */
export const REPO = join(__dirname, '..', '..', '..', '..', '..');
export const PYTHON = process.env.PYGENT_PYTHON ?? 'python3';

export interface ScriptedModel {
  baseUrl: string;
  /** Appends replies to the model's script (POST /_control/script). */
  add(items: unknown[]): Promise<void>;
  stop(): void;
}

async function waitFor<T>(what: string, fn: () => T | undefined, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = fn();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startScriptedModel(dir: string): Promise<ScriptedModel> {
  const script = join(dir, 'script.json');
  const portFile = join(dir, 'model-url.txt');
  writeFileSync(script, '[]');
  const child = spawn(PYTHON, ['-m', 'tests.openai_server', '--script', script, '--port', '0', '--port-file', portFile], {
    cwd: REPO,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const baseUrl = await waitFor('the scripted model server', () => (existsSync(portFile) && readFileSync(portFile, 'utf8').trim()) || undefined);
  const control = baseUrl.replace(/\/v1\/?$/, '');
  return {
    baseUrl,
    add: async (items) => {
      const res = await fetch(`${control}/_control/script`, { method: 'POST', body: JSON.stringify(items), headers: { 'content-type': 'application/json' } });
      if (!res.ok) throw new Error(`scripting the model failed: ${res.status}`);
    },
    stop: () => child.kill(),
  };
}

interface Position {
  line: number;
  character: number;
}

function offsetOf(text: string, pos: Position): number {
  let offset = 0;
  for (let line = 0; line < pos.line; line++) {
    const next = text.indexOf('\n', offset);
    if (next < 0) return text.length;
    offset = next + 1;
  }
  return Math.min(offset + pos.character, text.length);
}

type DocumentChange =
  | { kind: 'create'; uri: string }
  | { kind: 'delete'; uri: string }
  | { kind: 'rename'; oldUri: string; newUri: string }
  | { textDocument: { uri: string }; edits: { range: { start: Position; end: Position }; newText: string }[] };

/** Applies a WorkspaceEdit to disk, as VS Code would (and then save). */
export function applyWorkspaceEdit(edit: { documentChanges?: DocumentChange[]; changes?: Record<string, { range: { start: Position; end: Position }; newText: string }[]> }): void {
  const changes: DocumentChange[] = [...(edit.documentChanges ?? [])];
  for (const [uri, edits] of Object.entries(edit.changes ?? {})) changes.push({ textDocument: { uri }, edits });
  for (const change of changes) {
    if ('kind' in change) {
      if (change.kind === 'create') {
        const file = fileURLToPath(change.uri);
        if (!existsSync(file)) writeFileSync(file, '');
      } else if (change.kind === 'delete') {
        unlinkSync(fileURLToPath(change.uri));
      }
      continue;
    }
    const file = fileURLToPath(change.textDocument.uri);
    let text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const sorted = [...change.edits].sort((a, b) => offsetOf(text, b.range.start) - offsetOf(text, a.range.start));
    for (const e of sorted) text = text.slice(0, offsetOf(text, e.range.start)) + e.newText + text.slice(offsetOf(text, e.range.end));
    writeFileSync(file, text);
  }
}

export interface RealServer extends ServerPort {
  connection: MessageConnection;
  process: ChildProcess;
  /** What `initialize` returned (the protocol version is in `capabilities.experimental.pygent`). */
  initializeResult: { capabilities: { experimental?: { pygent?: { protocolVersion?: unknown } } } };
  stderr: string[];
  shutdown(): Promise<void>;
}

/** Spawns `pygent lsp --stdio` and initializes it like vscode-languageclient does. */
export async function startPygentLsp(opts: { folder: string; model: ScriptedModel; dataHome: string; configuration?: ServerConfiguration }): Promise<RealServer> {
  const child = spawn(PYTHON, ['-m', 'pygent', 'lsp', '--stdio'], {
    cwd: opts.folder,
    env: {
      ...process.env,
      OPENAI_API_KEY: 'sk-test',
      OPENAI_BASE_URL: opts.model.baseUrl,
      PYGENT_MODEL: 'test-model',
      XDG_DATA_HOME: opts.dataHome,
      PYTHONPATH: REPO,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  child.stderr?.on('data', (d: Buffer) => stderr.push(d.toString()));
  if (!child.stdout || !child.stdin) throw new Error('no stdio');
  const connection = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  const states = new Emitter<ServerState>();
  connection.onRequest('workspace/applyEdit', (params: { edit: Parameters<typeof applyWorkspaceEdit>[0] }) => {
    applyWorkspaceEdit(params.edit);
    return { applied: true };
  });
  connection.onNotification('window/logMessage', () => undefined);
  connection.listen();
  const folderUri = pathToFileURL(opts.folder).toString();
  const initializeResult = await connection.sendRequest<{ capabilities: { experimental?: { pygent?: { protocolVersion?: unknown } } } }>('initialize', {
    processId: process.pid,
    rootUri: folderUri,
    workspaceFolders: [{ uri: folderUri, name: 'project' }],
    capabilities: {
      workspace: { applyEdit: true, workspaceEdit: { documentChanges: true, resourceOperations: ['create', 'rename', 'delete'] } },
      window: { workDoneProgress: false },
    },
    // As vscode-languageclient sends it (languageClient.ts): the server reads `pygent`.
    initializationOptions: { client: 'pygent-vscode-test', ...(opts.configuration ? { pygent: opts.configuration } : {}) },
  });
  await connection.sendNotification('initialized', {});
  const state: ServerState = { kind: 'running' };
  return {
    connection,
    process: child,
    initializeResult,
    stderr,
    state,
    onDidChangeState: (listener) => states.event(listener),
    request: <R>(method: string, params: unknown) => connection.sendRequest<R>(method, params),
    onNotification: (method, handler) => void connection.onNotification(method, handler),
    onRequest: (method, handler) =>
      void connection.onRequest(method, (params: unknown, token) => handler(params, { isCancellationRequested: token.isCancellationRequested, onCancellationRequested: (l) => token.onCancellationRequested(l) })),
    start: async () => undefined,
    shutdown: async () => {
      try {
        await connection.sendRequest('shutdown');
        await connection.sendNotification('exit');
      } catch {
        // already gone
      }
      await new Promise<void>((resolve) => {
        if (child.exitCode !== null) resolve();
        child.once('exit', () => resolve());
        setTimeout(() => {
          child.kill('SIGKILL');
          resolve();
        }, 5000);
      });
      connection.dispose();
    },
  };
}

export function scratch(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
