/**
 * Parsers for what the server sends that reaches the page: session updates (shared
 * with the page, see webview/messages.ts) and permission requests.
 */

import { array, jsonObject, literal, nullable, object, str, withDefault } from '../../webview/parse';
import type { PermissionOption, PermissionOptionId, RequestPermissionParams, ToolCallInfo } from '../protocol';

const optionId = literal<PermissionOptionId>('allow_once', 'allow_always', 'reject_once', 'reject_always');

const toolCallInfo = object<ToolCallInfo>({
  callId: str,
  tool: str,
  arguments: withDefault(jsonObject, {}),
  preview: withDefault(str, ''),
  previewKind: withDefault(literal('command', 'diff', 'text'), 'text'),
  path: nullable(str),
});

const permissionOption = object<PermissionOption>({ optionId, name: str, kind: optionId });

/** `pygent/requestPermission` params; throws ParseError naming the bad field. */
export const parsePermissionParams = object<RequestPermissionParams>({
  sessionId: str,
  toolCall: toolCallInfo,
  options: array(permissionOption, 8),
  taskId: nullable(str),
  reason: withDefault(str, ''),
});
