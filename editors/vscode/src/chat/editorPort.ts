/**
 * The {@link EditorPort} on real VS Code: folders, files, the diff editor (text held in
 * memory is served as read-only `pygent-diff:` documents), confirmations.
 */

import * as api from '../common/vscodeapi';
import type { DiffSide, EditorPort, WorkspaceFolderInfo } from './controller';

export const DIFF_SCHEME = 'pygent-diff';
/** In-memory documents kept for the diff editor; old ones are dropped first. */
const MAX_DOCS = 100;

/** Read-only documents for the diff editor's in-memory sides. */
export class MemoryDocuments {
  private readonly docs = new Map<string, string>();
  private counter = 0;

  /** Stores `content`; the URI's last segment is `name`, so the editor picks a language. */
  add(name: string, content: string): api.Uri {
    this.counter += 1;
    const path = `/${this.counter}/${name.replace(/[\\/]/g, '_')}`;
    this.docs.set(path, content);
    if (this.docs.size > MAX_DOCS) {
      const oldest = this.docs.keys().next().value;
      if (oldest !== undefined) this.docs.delete(oldest);
    }
    return api.parseUri(`${DIFF_SCHEME}:${path}`);
  }

  provideTextDocumentContent(uri: api.Uri): string {
    return this.docs.get(uri.path) ?? '';
  }
}

function toInfo(folder: { name: string; uri: api.Uri }): WorkspaceFolderInfo {
  return { name: folder.name, uri: folder.uri.toString(), fsPath: folder.uri.fsPath };
}

export class VsCodeEditorPort implements EditorPort {
  constructor(private readonly memory: MemoryDocuments) {}

  workspaceFolders(): WorkspaceFolderInfo[] {
    return api.workspaceFolders().filter((f) => f.uri.scheme === 'file').map(toInfo);
  }

  activeFolder(): WorkspaceFolderInfo | undefined {
    const folder = api.activeEditorFolder();
    return folder && folder.uri.scheme === 'file' ? toInfo(folder) : undefined;
  }

  async pickFolder(folders: WorkspaceFolderInfo[]): Promise<WorkspaceFolderInfo | undefined> {
    const picked = await api.showQuickPick(
      folders.map((f) => ({ label: f.name, description: f.fsPath, folder: f })),
      { placeHolder: 'Folder for the new Pygent session' },
    );
    return picked?.folder;
  }

  readFile(fsPath: string): Promise<string | undefined> {
    return api.readTextFile(api.fileUri(fsPath));
  }

  private uriOf(side: DiffSide): api.Uri {
    return 'file' in side ? api.fileUri(side.file) : this.memory.add(side.name, side.content);
  }

  openDiff(left: DiffSide, right: DiffSide, title: string): Promise<void> {
    return api.openDiff(this.uriOf(left), this.uriOf(right), title);
  }

  openText(content: string, language: string): Promise<void> {
    return api.openTextDocument(content, language);
  }

  saveFiles(fsPaths: string[]): Promise<void> {
    return api.saveFiles(fsPaths);
  }

  async confirm(message: string, action: string): Promise<boolean> {
    return (await api.showModalWarning(message, '', action)) === action;
  }
}
