// Loaded with `node --require`: makes require('vscode') return the hand-written fake,
// so the extension's modules run in unit tests without a VS Code binary.
const Module = require('node:module');
const path = require('node:path');

const fake = path.join(__dirname, 'fake-vscode.js');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (request === 'vscode') return fake;
  return resolve.call(this, request, ...rest);
};
