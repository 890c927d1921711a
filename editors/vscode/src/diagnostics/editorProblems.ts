/**
 * The editor's problems to Pygent: what `vscode.languages.getDiagnostics()` holds goes to
 * the server (`pygent/workspace/diagnostics`), so the agent's `diagnostics` tool reads
 * what the user sees in the Problems panel. Pygent's own problems (source `pygent:...`)
 * are not sent back. Changes are batched: a linter rewriting 500 files sends one request.
 */

import { WORKSPACE_DIAGNOSTICS, type EditorDiagnostic, type EditorDiagnosticsParams, type FileDiagnostics } from '../protocol';

/** What the extension knows of one VS Code diagnostic (the parts Pygent reads). */
export interface ProblemLike {
  range: { start: { line: number; character: number }; end: { line: number; character: number } };
  message: string;
  /** vscode.DiagnosticSeverity: 0 error, 1 warning, 2 information, 3 hint. */
  severity: number;
  source?: string;
  code?: string | number | { value: string | number };
}

export type FileProblems = [uri: string, problems: readonly ProblemLike[]];

/** Milliseconds changes are gathered before one request goes out. */
export const BATCH_MS = 300;
/** At most this many problems per file are sent. */
export const MAX_PER_FILE = 200;

function own(problem: ProblemLike): boolean {
  return (problem.source ?? '').startsWith('pygent:');
}

function toWire(problem: ProblemLike): EditorDiagnostic {
  const code = typeof problem.code === 'object' && problem.code !== null ? problem.code.value : problem.code;
  return {
    range: {
      start: { line: problem.range.start.line, character: problem.range.start.character },
      end: { line: problem.range.end.line, character: problem.range.end.character },
    },
    message: problem.message,
    // VS Code counts severities from 0, LSP from 1.
    severity: problem.severity + 1,
    source: problem.source ?? null,
    code: code ?? null,
  };
}

/** The request for these files (file: URIs only; Pygent's own problems left out). */
export function report(files: readonly FileProblems[], replaceAll: boolean): EditorDiagnosticsParams {
  const out: FileDiagnostics[] = [];
  for (const [uri, problems] of files) {
    if (!uri.startsWith('file:')) continue;
    out.push({ uri, diagnostics: problems.filter((p) => !own(p)).slice(0, MAX_PER_FILE).map(toWire) });
  }
  return { files: out, replaceAll };
}

export interface ProblemSource {
  /** Every file's problems (vscode.languages.getDiagnostics()). */
  all(): FileProblems[];
  /** One file's problems (vscode.languages.getDiagnostics(uri)). */
  of(uri: string): readonly ProblemLike[];
}

export type Send = (method: string, params: EditorDiagnosticsParams) => Promise<unknown>;

/** Keeps the server's copy of the editor's problems up to date. */
export class EditorProblemsSync {
  private pending = new Set<string>();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly source: ProblemSource,
    private readonly send: Send,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** The server (re)started: send everything, replacing what it had. */
  async sendAll(): Promise<void> {
    this.pending.clear();
    await this.send(WORKSPACE_DIAGNOSTICS, report(this.source.all(), true)).catch(this.onError);
  }

  /** Problems changed in these files (onDidChangeDiagnostics): send them soon, together. */
  changed(uris: readonly string[]): void {
    for (const uri of uris) this.pending.add(uri);
    if (this.timer === undefined) this.timer = setTimeout(() => void this.flush(), BATCH_MS);
  }

  async flush(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const uris = [...this.pending];
    this.pending.clear();
    if (uris.length === 0) return;
    const files: FileProblems[] = uris.map((uri) => [uri, this.source.of(uri)]);
    await this.send(WORKSPACE_DIAGNOSTICS, report(files, false)).catch(this.onError);
  }

  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
