/** The webview HTML: the CSP allows our script by nonce and nothing remote. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chatHtml, contentSecurityPolicy, makeNonce } from '../../src/chat/html';

describe('chat HTML', () => {
  const csp = contentSecurityPolicy('https://file+.vscode-resource.vscode-cdn.net', 'N0NCE');

  it('starts from nothing and allows only our resources', () => {
    assert.match(csp, /^default-src 'none'; /);
    assert.match(csp, /script-src 'nonce-N0NCE'(;|$)/);
    assert.match(csp, /style-src https:\/\/file\+\.vscode-resource\.vscode-cdn\.net(;|$)/);
    assert.match(csp, /connect-src 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*|https?:(?!\/\/file\+)/);
  });

  it('puts the nonce on the one script and escapes attributes', () => {
    const html = chatHtml({ cspSource: 'vscode-webview:', nonce: 'abc', scriptUri: 'vscode-webview://x/chat.js?a="b"', styleUri: 'vscode-webview://x/chat.css' });
    assert.equal(html.match(/<script/g)?.length, 1);
    assert.match(html, /<script nonce="abc" src="vscode-webview:\/\/x\/chat\.js\?a=&quot;b&quot;"><\/script>/);
    assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none';/);
    assert.match(html, /<div id="app" class="app"><\/div>/);
  });

  it('makes a fresh, long nonce each time', () => {
    const a = makeNonce();
    assert.notEqual(a, makeNonce());
    assert.ok(Buffer.from(a, 'base64').length >= 16);
  });
});
