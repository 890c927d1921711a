// A hand-written fake of the parts of the `vscode` API the extension uses, for unit
// tests run by Node without VS Code (test/register-fake-vscode.js maps `vscode` here).
// It records what the extension registers and lets tests script the user's answers
// through `fake` (e.g. fake.inputBoxAnswers.push('sk-...')).
'use strict';

class Disposable {
  constructor(fn) {
    this._fn = fn;
  }
  dispose() {
    if (this._fn) this._fn();
    this._fn = undefined;
  }
  static from(...items) {
    return new Disposable(() => items.forEach((d) => d.dispose()));
  }
}

class EventEmitter {
  constructor() {
    this._listeners = [];
    this.event = (listener) => {
      this._listeners.push(listener);
      return new Disposable(() => (this._listeners = this._listeners.filter((l) => l !== listener)));
    };
  }
  fire(value) {
    for (const l of [...this._listeners]) l(value);
  }
  dispose() {
    this._listeners = [];
  }
}

class Uri {
  constructor(scheme, path, query = '') {
    this.scheme = scheme;
    this.path = path;
    this.query = query;
  }
  get fsPath() {
    return this.path;
  }
  toString() {
    return `${this.scheme}:${this.scheme === 'file' ? '//' : ''}${this.path}${this.query ? `?${this.query}` : ''}`;
  }
  static file(p) {
    return new Uri('file', p);
  }
  static parse(value) {
    const m = /^([a-z][a-z0-9+.-]*):(?:\/\/)?([^?]*)(?:\?(.*))?$/i.exec(value);
    if (!m) throw new Error(`fake Uri.parse: ${value}`);
    return new Uri(m[1], m[2].startsWith('/') ? m[2] : `/${m[2]}`, m[3] ?? '');
  }
  static joinPath(base, ...segments) {
    return new Uri(base.scheme, [base.path.replace(/\/$/, ''), ...segments].join('/'));
  }
}

class ThemeColor {
  constructor(id) {
    this.id = id;
  }
}

const StatusBarAlignment = { Left: 1, Right: 2 };

function logChannel(name) {
  const lines = [];
  const log = (level) => (m) => lines.push(`${level} ${m instanceof Error ? m.message : m}`);
  return { name, lines, trace: log('trace'), debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error'), appendLine: log('line'), show() {}, dispose() {} };
}

const fake = {
  commands: new Map(),
  executed: [],
  views: new Map(),
  contentProviders: new Map(),
  statusBarItems: [],
  outputChannels: [],
  messages: [],
  inputBoxAnswers: [],
  messageAnswers: [],
  configuration: {},
  configListeners: [],
  workspaceFolders: [],
  openedDocuments: [],
  reset() {
    this.commands.clear();
    this.executed = [];
    this.views.clear();
    this.contentProviders.clear();
    this.statusBarItems = [];
    this.outputChannels = [];
    this.messages = [];
    this.inputBoxAnswers = [];
    this.messageAnswers = [];
    this.configuration = {};
    this.configListeners = [];
    this.workspaceFolders = [];
    this.openedDocuments = [];
  },
};

function message(level) {
  return (text, ...items) => {
    fake.messages.push({ level, text, items: items.filter((i) => typeof i === 'string') });
    return Promise.resolve(fake.messageAnswers.shift());
  };
}

const window = {
  createOutputChannel(name) {
    const channel = logChannel(name);
    fake.outputChannels.push(channel);
    return channel;
  },
  createStatusBarItem(id, alignment, priority) {
    const item = { id, alignment, priority, text: '', tooltip: '', command: undefined, backgroundColor: undefined, visible: false, show() { this.visible = true; }, hide() { this.visible = false; }, dispose() {} };
    fake.statusBarItems.push(item);
    return item;
  },
  registerWebviewViewProvider(id, provider) {
    fake.views.set(id, provider);
    return new Disposable(() => fake.views.delete(id));
  },
  showErrorMessage: message('error'),
  showWarningMessage: message('warning'),
  showInformationMessage: message('info'),
  showInputBox(options) {
    fake.lastInputBox = options;
    return Promise.resolve(fake.inputBoxAnswers.shift());
  },
  showQuickPick(items) {
    return Promise.resolve(items[0]);
  },
  showTextDocument(doc) {
    fake.openedDocuments.push(doc);
    return Promise.resolve({ document: doc });
  },
  activeTextEditor: undefined,
};

const workspace = {
  get workspaceFolders() {
    return fake.workspaceFolders.length ? fake.workspaceFolders : undefined;
  },
  isTrusted: true,
  textDocuments: [],
  getConfiguration(section) {
    return {
      get(key, fallback) {
        const value = fake.configuration[`${section}.${key}`];
        return value === undefined ? fallback : value;
      },
    };
  },
  getWorkspaceFolder(uri) {
    return fake.workspaceFolders.find((f) => uri.path.startsWith(f.uri.path));
  },
  onDidChangeConfiguration(listener) {
    fake.configListeners.push(listener);
    return new Disposable(() => undefined);
  },
  onDidChangeWorkspaceFolders() {
    return new Disposable(() => undefined);
  },
  registerTextDocumentContentProvider(scheme, provider) {
    fake.contentProviders.set(scheme, provider);
    return new Disposable(() => fake.contentProviders.delete(scheme));
  },
  openTextDocument(options) {
    return Promise.resolve({ uri: Uri.parse('untitled:/doc'), ...options, isDirty: false, save: () => Promise.resolve(true) });
  },
  createFileSystemWatcher() {
    return { dispose() {} };
  },
  fs: {
    readFile() {
      return Promise.reject(new Error('fake fs: no files'));
    },
  },
};

const commands = {
  registerCommand(id, fn) {
    if (fake.commands.has(id)) throw new Error(`command ${id} registered twice`);
    fake.commands.set(id, fn);
    return new Disposable(() => fake.commands.delete(id));
  },
  executeCommand(id, ...args) {
    fake.executed.push({ id, args });
    const fn = fake.commands.get(id);
    return Promise.resolve(fn ? fn(...args) : undefined);
  },
};

// The Problems panel: tests put [uri, diagnostics] pairs in fake.diagnostics.
const languages = {
  getDiagnostics(uri) {
    const all = fake.diagnostics ?? [];
    if (uri === undefined) return all.map(([u, items]) => [Uri.parse(u), items]);
    return (all.find(([u]) => u === uri.toString()) ?? [uri, []])[1];
  },
  onDidChangeDiagnostics() {
    return new Disposable(() => undefined);
  },
};

module.exports = {
  languages,
  Disposable,
  EventEmitter,
  Uri,
  ThemeColor,
  StatusBarAlignment,
  window,
  workspace,
  commands,
  env: { uiKind: 1 },
  fake,
};
