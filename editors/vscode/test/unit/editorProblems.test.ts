/** The editor's problems sent to the server: shape, Pygent's own left out, batching. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EditorProblemsSync, report, type FileProblems, type ProblemLike } from '../../src/diagnostics/editorProblems';

const range = { start: { line: 3, character: 4 }, end: { line: 3, character: 9 } };
const pylance: ProblemLike = { range, message: 'Type "int" is not assignable', severity: 0, source: 'Pylance', code: { value: 'reportReturnType' } };
const ours: ProblemLike = { range, message: 'unused', severity: 1, source: 'pygent:ruff', code: 'F841' };

describe('editor problems', () => {
  it('converts VS Code diagnostics to the protocol, without Pygent\'s own', () => {
    const params = report([['file:///ws/a.py', [pylance, ours]], ['untitled:Untitled-1', [pylance]]], true);
    assert.deepEqual(params, {
      replaceAll: true,
      files: [
        {
          uri: 'file:///ws/a.py',
          diagnostics: [{ range, message: 'Type "int" is not assignable', severity: 1, source: 'Pylance', code: 'reportReturnType' }],
        },
      ],
    });
  });

  it('sends everything on start, then changed files together', async () => {
    const sent: unknown[] = [];
    const files: FileProblems[] = [['file:///ws/a.py', [pylance]], ['file:///ws/b.py', []]];
    const sync = new EditorProblemsSync(
      { all: () => files, of: (uri) => files.find(([u]) => u === uri)?.[1] ?? [] },
      async (method, params) => sent.push([method, params]),
      (err) => assert.fail(String(err)),
    );
    await sync.sendAll();
    sync.changed(['file:///ws/b.py']);
    sync.changed(['file:///ws/a.py', 'file:///ws/b.py']);
    await sync.flush();
    assert.equal(sent.length, 2);
    const [method, first] = sent[0] as [string, { replaceAll: boolean; files: unknown[] }];
    assert.equal(method, 'pygent/workspace/diagnostics');
    assert.equal(first.replaceAll, true);
    const second = (sent[1] as [string, { replaceAll: boolean; files: { uri: string }[] }])[1];
    assert.equal(second.replaceAll, false);
    assert.deepEqual(second.files.map((f) => f.uri), ['file:///ws/b.py', 'file:///ws/a.py']);
    sync.dispose();
  });
});
