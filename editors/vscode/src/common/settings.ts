/**
 * The extension's settings (`pygent.*`) and what they mean for the server: which command
 * starts it, with which environment, and the configuration it is sent.
 *
 * Settings reach the server as its configuration (`initializationOptions`, then
 * `workspace/didChangeConfiguration`: see {@link serverConfiguration}), so changing them
 * needs no restart. Only the secrets go into the environment: the API key (from
 * SecretStorage, passed in by the caller; never from settings) and the base URL it is
 * sent to. Pure functions over plain data, so they are unit-tested without VS Code.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ApprovalMode, DiagnosticMatcher, RuntimeKind, ServerConfiguration, SyncMode } from '../protocol';

export const SECTION = 'pygent';

export type UserApprovalMode = Exclude<ApprovalMode, 'api'>;
/** How a session with a folder sees it (`none` is for sessions without one). */
export type FolderSyncMode = Exclude<SyncMode, 'none'>;

export interface PygentSettings {
  /** Path to the `pygent` executable; wins over `pythonPath`. */
  serverPath: string;
  /** A Python interpreter with Pygent installed (`python -m pygent lsp`). */
  pythonPath: string;
  /** Model name; empty means the server's default. */
  model: string;
  /** OpenAI-compatible base URL; empty means the server's default. */
  baseUrl: string;
  runtime: RuntimeKind;
  approvalMode: UserApprovalMode;
  /** Extra environment variables for the server process. */
  env: Record<string, string>;
  /** The sync mode of new sessions over a folder. */
  syncMode: FolderSyncMode;
  /**
   * The server settings passed through as they are ({@link PASSED_SETTINGS}): only the
   * ones the user set; the others stay the server's own (flags, environment, `pygent.toml`).
   */
  passed: PassedConfiguration;
}

/** The part of the server's configuration that {@link PASSED_SETTINGS} fill. */
export type PassedConfiguration = Omit<ServerConfiguration, 'model' | 'baseUrl' | 'approvalMode' | 'runtime' | 'syncMode'>;

type PassedKind = 'integer' | 'number' | 'boolean' | 'string' | 'strings' | 'matchers' | readonly string[];

/** One `pygent.*` setting that is a key of the server's configuration, unchanged. */
export interface PassedSetting {
  /** The setting's name under `pygent.` (`budget.calls`). */
  setting: string;
  /** Its key in the server's configuration (`budgetCalls`). */
  wire: keyof PassedConfiguration;
  kind: PassedKind;
}

/**
 * The settings the server reads from its configuration that need nothing from the
 * extension but passing on: follow-along, extra diagnostic matchers, budgets, limits.
 * The server converts and checks each value (a bad one is reported in the Output
 * channel, naming the key, and the server's own setting is kept).
 */
export const PASSED_SETTINGS: readonly PassedSetting[] = [
  { setting: 'followAlong', wire: 'followAlong', kind: 'boolean' },
  { setting: 'diagnosticMatchers', wire: 'diagnosticMatchers', kind: 'matchers' },
  { setting: 'budget.tokens', wire: 'budgetTokens', kind: 'integer' },
  { setting: 'budget.cost', wire: 'budgetCost', kind: 'number' },
  { setting: 'budget.calls', wire: 'budgetCalls', kind: 'integer' },
  { setting: 'budget.time', wire: 'budgetTime', kind: 'number' },
  { setting: 'maxSteps', wire: 'maxSteps', kind: 'integer' },
  { setting: 'maxTasks', wire: 'maxTasks', kind: 'integer' },
  { setting: 'stepTimeout', wire: 'stepTimeout', kind: 'number' },
  { setting: 'taskTimeout', wire: 'taskTimeout', kind: 'number' },
  { setting: 'commandTimeout', wire: 'commandTimeout', kind: 'number' },
  { setting: 'requestTimeout', wire: 'requestTimeout', kind: 'number' },
  { setting: 'temperature', wire: 'temperature', kind: 'number' },
  { setting: 'toolChoice', wire: 'toolChoice', kind: ['auto', 'required', 'none', 'omit'] },
  { setting: 'image', wire: 'image', kind: 'string' },
  { setting: 'network', wire: 'network', kind: 'boolean' },
  { setting: 'approvalTimeout', wire: 'approvalTimeout', kind: 'number' },
  { setting: 'bannedCommands', wire: 'bannedCommands', kind: 'strings' },
  { setting: 'disabledTools', wire: 'disabledTools', kind: 'strings' },
];

/** Reads one setting; `vscode.WorkspaceConfiguration` fits, and so does a test double. */
export interface ConfigurationReader {
  get<T>(key: string): T | undefined;
}

const RUNTIMES: readonly RuntimeKind[] = ['auto', 'docker', 'bwrap', 'local'];
const APPROVAL_MODES: readonly UserApprovalMode[] = ['auto', 'confirm', 'never', 'read-only'];
const SYNC_MODES: readonly FolderSyncMode[] = ['copy', 'cow', 'mount'];
const SEVERITIES = ['error', 'warning', 'information', 'hint'] as const;

/** A diagnostic matcher from settings: its known keys, when tool and pattern are text. */
function matcherOf(value: unknown): DiagnosticMatcher | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { tool, pattern, command, severity } = value as Record<string, unknown>;
  if (typeof tool !== 'string' || !tool.trim() || typeof pattern !== 'string' || !pattern) return undefined;
  return {
    tool: tool.trim(),
    pattern,
    ...(typeof command === 'string' && command ? { command } : {}),
    ...(SEVERITIES.find((s) => s === severity) ? { severity: severity as DiagnosticMatcher['severity'] } : {}),
  };
}

/** One passed-through value, or undefined when it is unset (null, empty) or of the wrong type. */
function passedValue(kind: PassedKind, value: unknown): unknown {
  if (value === null || value === undefined) return undefined;
  if (Array.isArray(kind)) return typeof value === 'string' && kind.includes(value) ? value : undefined;
  switch (kind) {
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value) ? value : undefined;
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
    case 'boolean':
      return typeof value === 'boolean' ? value : undefined;
    case 'string':
      return typeof value === 'string' && value.trim() ? value.trim() : undefined;
    case 'strings': {
      const list = Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string' && v.trim() !== '').map((v) => v.trim()) : [];
      return list.length ? list : undefined;
    }
    case 'matchers': {
      const list = Array.isArray(value) ? value.map(matcherOf).filter((m): m is DiagnosticMatcher => m !== undefined) : [];
      return list.length ? list : undefined;
    }
  }
  return undefined;
}

/** The passed-through settings the user set. */
function readPassed(config: ConfigurationReader): PassedConfiguration {
  const out: Record<string, unknown> = {};
  for (const { setting, wire, kind } of PASSED_SETTINGS) {
    const value = passedValue(kind, config.get<unknown>(setting));
    if (value !== undefined) out[wire] = value;
  }
  return out as PassedConfiguration;
}

function stringSetting(config: ConfigurationReader, key: string): string {
  const value = config.get<unknown>(key);
  return typeof value === 'string' ? value.trim() : '';
}

function pick<T extends string>(value: unknown, allowed: readonly T[], fallback: T): T {
  return typeof value === 'string' && (allowed as readonly string[]).includes(value) ? (value as T) : fallback;
}

/** Settings with every value checked; a wrong type falls back to the default. */
export function readSettings(config: ConfigurationReader): PygentSettings {
  const rawEnv = config.get<unknown>('env');
  const env: Record<string, string> = {};
  if (typeof rawEnv === 'object' && rawEnv !== null && !Array.isArray(rawEnv)) {
    for (const [key, value] of Object.entries(rawEnv)) {
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') env[key] = String(value);
    }
  }
  return {
    serverPath: stringSetting(config, 'serverPath'),
    pythonPath: stringSetting(config, 'pythonPath'),
    model: stringSetting(config, 'model'),
    baseUrl: stringSetting(config, 'baseUrl'),
    runtime: pick(config.get<unknown>('runtime'), RUNTIMES, 'auto'),
    approvalMode: pick(config.get<unknown>('approvalMode'), APPROVAL_MODES, 'auto'),
    env,
    syncMode: pick(config.get<unknown>('syncMode'), SYNC_MODES, 'copy'),
    passed: readPassed(config),
  };
}

/**
 * The settings whose change needs a new server process: what runs, and its environment
 * (the extra variables, and the base URL that goes with the API key).
 */
export const RESTART_SETTINGS = ['serverPath', 'pythonPath', 'baseUrl', 'env'].map((key) => `${SECTION}.${key}`);

/**
 * The settings the running server takes by `workspace/didChangeConfiguration`, no
 * restart (most apply to new sessions; the server logs which applied to live ones).
 */
export const LIVE_SETTINGS = ['model', 'runtime', 'approvalMode', 'syncMode', ...PASSED_SETTINGS.map((s) => s.setting)].map((key) => `${SECTION}.${key}`);

/**
 * What the server is configured with (the `pygent` section of its configuration): sent
 * as `initializationOptions.pygent`, with every change, and as the answer to the
 * server's `workspace/configuration` request. An empty model is left out (the server's
 * own default applies).
 */
export function serverConfiguration(settings: PygentSettings): ServerConfiguration {
  return {
    ...(settings.model ? { model: settings.model } : {}),
    runtime: settings.runtime,
    approvalMode: settings.approvalMode,
    syncMode: settings.syncMode,
    ...settings.passed,
  };
}

export interface ServerCommand {
  command: string;
  args: string[];
  /** Which setting (or PATH) it came from, for messages. */
  source: 'serverPath' | 'pythonPath' | 'PATH';
}

export class NotInstalledError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotInstalledError';
  }
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Finds `name` on a PATH string (with Windows extensions); undefined when absent. */
export function findOnPath(name: string, pathVar: string | undefined, platform: NodeJS.Platform = process.platform, exists: (file: string) => boolean = isExecutable): string | undefined {
  const exts = platform === 'win32' ? ['.exe', '.cmd', '.bat', ''] : [''];
  for (const dir of (pathVar ?? '').split(platform === 'win32' ? ';' : ':')) {
    if (!dir) continue;
    for (const ext of exts) {
      const candidate = path.join(dir, name + ext);
      if (exists(candidate)) return candidate;
    }
  }
  return undefined;
}

/** Expands `~` and `${workspaceFolder}`-free paths the way users type them in settings. */
export function expandHome(file: string, home: string | undefined): string {
  if (home && (file === '~' || file.startsWith('~/'))) return path.join(home, file.slice(1));
  return file;
}

/**
 * The command that starts the language server (without `--stdio`, which the language
 * client appends). Throws {@link NotInstalledError} with a message saying what to do.
 */
export function resolveServerCommand(
  settings: PygentSettings,
  env: NodeJS.ProcessEnv,
  exists: (file: string) => boolean = isExecutable,
  platform: NodeJS.Platform = process.platform,
): ServerCommand {
  if (settings.serverPath) {
    const file = expandHome(settings.serverPath, env.HOME);
    // A bare name ("pygent") is looked up on PATH like a shell would.
    const found = file.includes('/') || file.includes('\\') ? (exists(file) ? file : undefined) : findOnPath(file, env.PATH, platform, exists);
    if (!found) throw new NotInstalledError(`The Pygent executable set in "pygent.serverPath" was not found: ${settings.serverPath}`);
    return { command: found, args: ['lsp'], source: 'serverPath' };
  }
  if (settings.pythonPath) {
    const file = expandHome(settings.pythonPath, env.HOME);
    const found = file.includes('/') || file.includes('\\') ? (exists(file) ? file : undefined) : findOnPath(file, env.PATH, platform, exists);
    if (!found) throw new NotInstalledError(`The Python interpreter set in "pygent.pythonPath" was not found: ${settings.pythonPath}`);
    return { command: found, args: ['-m', 'pygent', 'lsp'], source: 'pythonPath' };
  }
  const onPath = findOnPath('pygent', env.PATH, platform, exists);
  if (!onPath) {
    throw new NotInstalledError(
      'Pygent is not installed or not on PATH. Install it with "pip install pygent", or set "pygent.serverPath" (or "pygent.pythonPath").',
    );
  }
  return { command: onPath, args: ['lsp'], source: 'PATH' };
}

/** Variables the settings may not set: the key only ever comes from SecretStorage. */
const FORBIDDEN_ENV = new Set(['OPENAI_API_KEY']);

export interface ServerEnvironment {
  env: Record<string, string>;
  /** Problems to log (e.g. a key found in settings.json and ignored). */
  warnings: string[];
}

/**
 * The server's environment: the editor's own, the extra variables from settings, the
 * base URL (`OPENAI_BASE_URL`) and the API key from SecretStorage (which also replaces a
 * key inherited from the editor's environment). Other settings are not here: they are
 * the server's configuration ({@link serverConfiguration}).
 */
export function serverEnvironment(base: NodeJS.ProcessEnv, settings: PygentSettings, apiKey: string | undefined): ServerEnvironment {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  const warnings: string[] = [];
  for (const [k, v] of Object.entries(settings.env)) {
    if (FORBIDDEN_ENV.has(k.toUpperCase())) {
      warnings.push(`"pygent.env" sets ${k}: ignored. Use the command "Pygent: Set API Key" (the key is kept in the OS keychain).`);
      continue;
    }
    env[k] = v;
  }
  if (settings.baseUrl) env.OPENAI_BASE_URL = settings.baseUrl;
  if (apiKey) env.OPENAI_API_KEY = apiKey;
  return { env, warnings };
}

/** True when a key reaches the server (SecretStorage, or the editor's own environment). */
export function hasApiKey(env: Record<string, string>): boolean {
  return Boolean(env.OPENAI_API_KEY);
}
