/**
 * Logging for the extension: one "Pygent" log output channel, shared with the language
 * client (which writes the server's stderr there). Other modules take a {@link Logger}
 * so tests can pass a silent or recording one.
 */

export interface Logger {
  trace(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string | Error): void;
  /** Reveals the log to the user. */
  show(): void;
}

/** The subset of `vscode.LogOutputChannel` the logger uses. */
export interface LogSink {
  trace(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string | Error): void;
  show(preserveFocus?: boolean): void;
}

export function createLogger(sink: LogSink): Logger {
  return {
    trace: (m) => sink.trace(m),
    info: (m) => sink.info(m),
    warn: (m) => sink.warn(m),
    error: (m) => sink.error(m),
    show: () => sink.show(true),
  };
}

/** A logger that drops everything (tests, and before activation wires the real one). */
export const silentLogger: Logger = {
  trace: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  show: () => undefined,
};

/** A one-line description of anything thrown, for logs and user messages. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null && 'message' in err && typeof err.message === 'string') return err.message;
  return String(err);
}
