/**
 * The thin layer over the `vscode` module that the rest of the extension calls.
 * Keeping every call here (a) documents which parts of the API we depend on and (b) lets
 * unit tests replace VS Code with test/fake-vscode.js in one place.
 */

import * as vscode from 'vscode';

export type { Disposable, ExtensionContext, LogOutputChannel, Uri, WebviewView } from 'vscode';

export function createLogOutputChannel(name: string): vscode.LogOutputChannel {
  return vscode.window.createOutputChannel(name, { log: true });
}

export function registerCommand(command: string, callback: (...args: unknown[]) => unknown): vscode.Disposable {
  return vscode.commands.registerCommand(command, callback);
}

export function executeCommand<T = unknown>(command: string, ...rest: unknown[]): Thenable<T> {
  return vscode.commands.executeCommand<T>(command, ...rest);
}

export function getConfiguration(section: string): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(section);
}

export function onDidChangeConfiguration(listener: (e: vscode.ConfigurationChangeEvent) => unknown): vscode.Disposable {
  return vscode.workspace.onDidChangeConfiguration(listener);
}

export function onDidChangeWorkspaceFolders(listener: () => unknown): vscode.Disposable {
  return vscode.workspace.onDidChangeWorkspaceFolders(listener);
}

export function workspaceFolders(): readonly vscode.WorkspaceFolder[] {
  return vscode.workspace.workspaceFolders ?? [];
}

export function activeEditorFolder(): vscode.WorkspaceFolder | undefined {
  const uri = vscode.window.activeTextEditor?.document.uri;
  return uri ? vscode.workspace.getWorkspaceFolder(uri) : undefined;
}


export function showInformationMessage(message: string, ...items: string[]): Thenable<string | undefined> {
  return vscode.window.showInformationMessage(message, ...items);
}

export function showModalWarning(message: string, detail: string, ...items: string[]): Thenable<string | undefined> {
  return vscode.window.showWarningMessage(message, { modal: true, detail }, ...items);
}

export function showInputBox(options: vscode.InputBoxOptions): Thenable<string | undefined> {
  return vscode.window.showInputBox(options);
}

export function showQuickPick<T extends vscode.QuickPickItem>(items: T[], options: vscode.QuickPickOptions): Thenable<T | undefined> {
  return vscode.window.showQuickPick(items, options);
}

export function createStatusBarItem(id: string, priority: number): vscode.StatusBarItem {
  return vscode.window.createStatusBarItem(id, vscode.StatusBarAlignment.Left, priority);
}

export function registerWebviewViewProvider(viewId: string, provider: vscode.WebviewViewProvider): vscode.Disposable {
  return vscode.window.registerWebviewViewProvider(viewId, provider);
}

export function registerTextDocumentContentProvider(scheme: string, provider: vscode.TextDocumentContentProvider): vscode.Disposable {
  return vscode.workspace.registerTextDocumentContentProvider(scheme, provider);
}

export function fileUri(fsPath: string): vscode.Uri {
  return vscode.Uri.file(fsPath);
}

export function parseUri(value: string): vscode.Uri {
  return vscode.Uri.parse(value);
}

export function joinUri(base: vscode.Uri, ...segments: string[]): vscode.Uri {
  return vscode.Uri.joinPath(base, ...segments);
}

export async function readTextFile(uri: vscode.Uri): Promise<string | undefined> {
  try {
    return new TextDecoder().decode(await vscode.workspace.fs.readFile(uri));
  } catch {
    return undefined; // missing or unreadable: callers treat both as "no such file"
  }
}

export async function openDiff(left: vscode.Uri, right: vscode.Uri, title: string): Promise<void> {
  await vscode.commands.executeCommand('vscode.diff', left, right, title, { preview: true });
}

export async function openTextDocument(content: string, language: string): Promise<void> {
  const doc = await vscode.workspace.openTextDocument({ content, language });
  await vscode.window.showTextDocument(doc, { preview: true });
}

/** Saves the documents of these files that are open and dirty. */
export async function saveFiles(fsPaths: string[]): Promise<void> {
  const wanted = new Set(fsPaths.map((p) => vscode.Uri.file(p).toString()));
  for (const doc of vscode.workspace.textDocuments) {
    if (doc.isDirty && wanted.has(doc.uri.toString())) await doc.save();
  }
}


/** Every file's diagnostics, as URI strings (the Problems panel's content). */
export function allDiagnostics(): [string, readonly vscode.Diagnostic[]][] {
  return vscode.languages.getDiagnostics().map(([uri, items]) => [uri.toString(), items]);
}

export function diagnosticsOf(uri: string): readonly vscode.Diagnostic[] {
  return vscode.languages.getDiagnostics(vscode.Uri.parse(uri));
}

export function onDidChangeDiagnostics(listener: (uris: string[]) => unknown): vscode.Disposable {
  return vscode.languages.onDidChangeDiagnostics((e) => listener(e.uris.map((u) => u.toString())));
}
