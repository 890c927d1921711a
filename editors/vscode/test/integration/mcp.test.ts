/**
 * MCP through the VS Code path: the chat controller against the real `pygent lsp` (as
 * the extension runs it, over stdio) with MCP servers from the folder's pygent.toml
 * (our SDK-built test server, tests/mcp/fault_server.py) and the scripted model. The
 * page gets the host-side warning and every server's state from session start (starting,
 * then ready: the session does not wait for them, its first turn does), and an
 * MCP call's approval names the server, tool and arguments; "always allow" becomes a
 * rule for that tool for the rest of the session.
 */

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ChatController } from '../../src/chat/controller';
import type { HostMessage } from '../../webview/messages';
import type { SessionUpdate } from '../../src/protocol';
import { defaultSettings, FakeEditor, FakeView, silentLogger } from '../unit/fakes';
import { PYTHON, REPO, type RealServer, type ScriptedModel, scratch, startPygentLsp, startScriptedModel } from './realServer';

const FAULT_SERVER = join(REPO, 'tests', 'mcp', 'fault_server.py');

/** A page whose user answers "Always allow" to every approval, and records them. */
class AlwaysView extends FakeView {
  controller: ChatController | undefined;
  readonly asked: Extract<HostMessage, { type: 'approval' }>['approval'][] = [];
  override post(message: HostMessage): void {
    super.post(message);
    if (message.type === 'approval') {
      this.asked.push(message.approval);
      setTimeout(() => void this.controller?.handle({ type: 'answerApproval', id: message.approval.id, optionId: 'allow_always', message: null }), 10);
    }
    // The fault server is held at its start until the page has shown it "starting".
    if (message.type === 'event' && message.event.type === 'mcp_server' && message.event.state === 'starting' && this.gate) {
      writeFileSync(this.gate, '');
    }
  }
  gate: string | undefined;
  events(): SessionUpdate[] {
    return this.of('event').map((m) => m.event);
  }
}

function server(name: string, where: 'sandbox' | 'host', env = ''): string {
  return `[mcp.servers.${name}]\ncommand = ${JSON.stringify(PYTHON)}\nargs = [${JSON.stringify(FAULT_SERVER)}]\nwhere = "${where}"\n${env}`;
}

describe('MCP: controller + real pygent lsp', { timeout: 180_000 }, () => {
  const tmp = scratch('pygent-vscode-mcp-');
  const folder = join(tmp.dir, 'project');
  let model: ScriptedModel;
  let lsp: RealServer;
  let view: AlwaysView;
  let controller: ChatController;

  before(async () => {
    mkdirSync(folder);
    // fault answers nothing until the gate file exists (FAULT_START_GATE): it cannot be
    // ready before the page showed it starting.
    const gate = join(tmp.dir, 'go');
    const env = `env = { FAULT_START_GATE = ${JSON.stringify(gate)}, FAULT_DIR = ${JSON.stringify(tmp.dir)} }\n`;
    writeFileSync(join(folder, 'pygent.toml'), server('fault', 'sandbox', env) + server('clock', 'host'));
    model = await startScriptedModel(tmp.dir);
    const settings = { ...defaultSettings, runtime: 'local' as const, model: 'test-model' };
    lsp = await startPygentLsp({ folder, model, dataHome: join(tmp.dir, 'data') });
    const editor = new FakeEditor();
    editor.folders = [{ name: 'project', uri: `file://${folder}`, fsPath: folder }];
    view = new AlwaysView();
    view.gate = gate;
    controller = new ChatController({
      server: lsp,
      editor,
      settings: () => settings,
      hasApiKey: () => true,
      runAction: () => undefined,
      showChat: () => undefined,
      log: silentLogger,
      hostName: 'test',
    });
    view.controller = controller;
    controller.attachView(view);
  });

  after(async () => {
    await lsp?.shutdown();
    model?.stop();
    tmp.remove();
  });

  it('shows the servers and the host warning, and asks once for an always-allowed MCP tool', async () => {
    await model.add([
      { tool_call: { name: 'mcp__fault__echo', arguments: { text: 'one' } } },
      { tool_call: { name: 'mcp__fault__echo', arguments: { text: 'two' } } },
      { text: 'Both echoed.' },
    ]);
    await controller.handle({ type: 'prompt', sessionId: null, text: 'echo twice' });
    const events = view.events();
    const notices = events.filter((e) => e.type === 'notice').map((e) => (e.type === 'notice' ? e.text : ''));
    assert.ok(notices.some((n) => n.includes("MCP server 'clock' runs on the host, outside the sandbox")), notices.join('\n'));
    const servers = events.filter((e): e is Extract<SessionUpdate, { type: 'mcp_server' }> => e.type === 'mcp_server');
    // The session opened without waiting for its servers: the page showed fault starting,
    // then ready (the turn waited for it); clock ends ready, on the host.
    const states = (name: string): string[] =>
      servers.filter((s) => s.name === name).map((s) => s.state).filter((s, i, all) => i === 0 || all[i - 1] !== s);
    assert.deepEqual(states('fault'), ['starting', 'ready']);
    assert.equal(states('clock').at(-1), 'ready');
    assert.equal(servers.find((s) => s.name === 'clock')?.where, 'host');
    assert.ok(servers.find((s) => s.name === 'fault' && s.state === 'ready')?.tools.includes('echo'));
    // local mode asks for the MCP call, once: "always" made a rule for mcp__fault__echo
    assert.equal(view.asked.length, 1, JSON.stringify(view.asked));
    assert.equal(view.asked[0]?.tool, 'mcp__fault__echo');
    assert.match(view.asked[0]?.preview ?? '', /MCP server fault, tool echo[\s\S]*"text": "one"/);
    const finished = events.filter((e) => e.type === 'tool_call_finished').map((e) => (e.type === 'tool_call_finished' ? e.output : ''));
    assert.deepEqual(finished, ['one', 'two']);
    assert.ok(events.some((e) => e.type === 'turn_ended' && e.text === 'Both echoed.'));
  });
});
