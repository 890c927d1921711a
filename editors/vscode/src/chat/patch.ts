/**
 * Rebuilding a file's new content from what the server sends: the arguments of a
 * write/edit call, or a unified diff applied to the current content. Used to show a
 * proposed write, or a change whose sandbox copy is not readable, in the diff editor.
 */

function splitKeepEnds(text: string): string[] {
  if (text === '') return [];
  const parts = text.split(/(?<=\n)/);
  return parts;
}

function stripEol(line: string | undefined): string | undefined {
  return line?.replace(/\r?\n$/, '');
}

const HUNK = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/;

/**
 * Applies a unified diff (as difflib or git write it) to `original`. Returns undefined
 * when the diff does not fit (context differs, truncated diff, overlapping hunks).
 */
export function applyUnifiedDiff(original: string, diff: string): string | undefined {
  const src = splitKeepEnds(original);
  const lines = diff.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const out: string[] = [];
  let pos = 0;
  let i = 0;
  let sawHunk = false;
  while (i < lines.length && !HUNK.test(lines[i] ?? '')) i++;
  while (i < lines.length) {
    const match = HUNK.exec(lines[i] ?? '');
    if (!match) return undefined;
    sawHunk = true;
    const oldStart = Number(match[1]);
    const oldCount = match[2] === undefined ? 1 : Number(match[2]);
    const target = oldCount === 0 ? oldStart : oldStart - 1;
    if (target < pos || target > src.length) return undefined;
    out.push(...src.slice(pos, target));
    pos = target;
    i++;
    let lastOp = '';
    while (i < lines.length && !(lines[i] ?? '').startsWith('@@')) {
      const line = lines[i] ?? '';
      const op = line[0] ?? ' ';
      const body = line.slice(1).replace(/\r$/, '');
      if (op === '\\') {
        // "\ No newline at end of file" refers to the line just before it.
        if (lastOp === '+') out[out.length - 1] = (out[out.length - 1] ?? '').replace(/\n$/, '');
      } else if (op === ' ' || line === '') {
        if (stripEol(src[pos]) !== body) return undefined;
        out.push(src[pos] ?? '');
        pos++;
      } else if (op === '-') {
        if (stripEol(src[pos]) !== body) return undefined;
        pos++;
      } else if (op === '+') {
        out.push(`${body}\n`);
      } else {
        return undefined; // e.g. "[diff truncated]": the rest is unknown
      }
      lastOp = op === '\\' ? lastOp : op;
      i++;
    }
  }
  if (!sawHunk) return undefined;
  out.push(...src.slice(pos));
  return out.join('');
}

/**
 * The content a write/edit tool call would leave in the file, given its current
 * content; falls back to applying the preview diff. Undefined when unknowable.
 */
export function proposedContent(tool: string, args: Record<string, unknown>, before: string, previewDiff: string): string | undefined {
  if (tool === 'write_file' && typeof args.content === 'string') return args.content;
  if (tool === 'edit_file' && typeof args.old_text === 'string' && typeof args.new_text === 'string') {
    const at = before.indexOf(args.old_text);
    if (at >= 0 && args.old_text !== '') return before.slice(0, at) + args.new_text + before.slice(at + args.old_text.length);
  }
  return previewDiff ? applyUnifiedDiff(before, previewDiff) : undefined;
}
