/**
 * The API key, kept in VS Code's SecretStorage (the OS keychain), never in settings.
 * The server gets it as OPENAI_API_KEY in its environment.
 */

import type * as vscode from 'vscode';

export const API_KEY_SECRET = 'pygent.openaiApiKey';

export class ApiKeyStore {
  private cached: string | undefined;

  constructor(private readonly secrets: vscode.SecretStorage) {}

  /** Reads the key once and caches it; {@link onDidChange} keeps the cache fresh. */
  async get(): Promise<string | undefined> {
    this.cached ??= (await this.secrets.get(API_KEY_SECRET)) || undefined;
    return this.cached;
  }

  /** The last value read (for synchronous status checks). */
  get current(): string | undefined {
    return this.cached;
  }

  async set(key: string): Promise<void> {
    this.cached = key;
    await this.secrets.store(API_KEY_SECRET, key);
  }

  async clear(): Promise<void> {
    this.cached = undefined;
    await this.secrets.delete(API_KEY_SECRET);
  }

  /** Fires when the key changes (also from another window); re-reads it first. */
  onDidChange(listener: () => void): vscode.Disposable {
    return this.secrets.onDidChange(async (e) => {
      if (e.key !== API_KEY_SECRET) return;
      this.cached = (await this.secrets.get(API_KEY_SECRET)) || undefined;
      listener();
    });
  }
}

/** Rejects obvious mistakes (spaces, quotes) without guessing the provider's format. */
export function validateApiKey(value: string): string | undefined {
  const key = value.trim();
  if (!key) return 'Enter a key (or press Escape to keep the current one).';
  if (/\s/.test(key)) return 'An API key has no spaces.';
  if (/^["']|["']$/.test(key)) return 'Paste the key without quotes.';
  return undefined;
}
