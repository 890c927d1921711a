/** Rebuilding new file content from unified diffs and tool arguments. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyUnifiedDiff, proposedContent } from '../../src/chat/patch';

describe('applyUnifiedDiff', () => {
  it('applies a difflib diff with several hunks', () => {
    const before = Array.from({ length: 20 }, (_, i) => `line ${i + 1}\n`).join('');
    const diff = [
      '--- a/f.txt',
      '+++ b/f.txt',
      '@@ -1,3 +1,3 @@',
      ' line 1',
      '-line 2',
      '+LINE TWO',
      ' line 3',
      '@@ -18,3 +18,4 @@',
      ' line 18',
      ' line 19',
      ' line 20',
      '+line 21',
      '',
    ].join('\n');
    const after = applyUnifiedDiff(before, diff);
    assert.equal(after, before.replace('line 2\n', 'LINE TWO\n') + 'line 21\n');
  });

  it('creates a file from an empty one', () => {
    assert.equal(applyUnifiedDiff('', '--- a/n\n+++ b/n\n@@ -0,0 +1,2 @@\n+a\n+b\n'), 'a\nb\n');
  });

  it('honours "no newline at end of file"', () => {
    assert.equal(applyUnifiedDiff('a\n', '@@ -1 +1 @@\n-a\n+b\n\\ No newline at end of file\n'), 'b');
  });

  it('refuses a diff that does not fit or is truncated', () => {
    assert.equal(applyUnifiedDiff('x\n', '@@ -1 +1 @@\n-a\n+b\n'), undefined);
    assert.equal(applyUnifiedDiff('a\n', '@@ -1 +1 @@\n-a\n[diff truncated]\n'), undefined);
    assert.equal(applyUnifiedDiff('a\n', 'not a diff'), undefined);
  });
});

describe('proposedContent', () => {
  it('uses write_file content and edit_file replacements', () => {
    assert.equal(proposedContent('write_file', { path: 'a', content: 'new\n' }, 'old\n', ''), 'new\n');
    assert.equal(proposedContent('edit_file', { path: 'a', old_text: 'b', new_text: 'B' }, 'abc', ''), 'aBc');
  });

  it('falls back to the preview diff', () => {
    assert.equal(proposedContent('other', {}, 'a\n', '@@ -1 +1 @@\n-a\n+b\n'), 'b\n');
    assert.equal(proposedContent('other', {}, 'a\n', ''), undefined);
  });
});
