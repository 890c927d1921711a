/** Delegated tasks per session, merged from `task_status` updates and `pygent/task/*` answers. */

import type { TaskInfo, TaskStatusUpdate } from '../protocol';

export const FINAL_TASK_STATES: ReadonlySet<string> = new Set(['finished', 'failed', 'timeout', 'cancelled']);

export class TaskTracker {
  private readonly bySession = new Map<string, Map<string, TaskInfo>>();

  private tasksOf(sessionId: string): Map<string, TaskInfo> {
    let tasks = this.bySession.get(sessionId);
    if (!tasks) {
      tasks = new Map();
      this.bySession.set(sessionId, tasks);
    }
    return tasks;
  }

  /** Merges a status update; returns the task as it now stands. */
  update(sessionId: string, u: TaskStatusUpdate): TaskInfo | undefined {
    if (!u.taskId) return undefined;
    const tasks = this.tasksOf(sessionId);
    const before = tasks.get(u.taskId);
    const info: TaskInfo = {
      taskId: u.taskId,
      status: u.status,
      persona: u.persona || before?.persona || '',
      prompt: u.prompt || before?.prompt || '',
      steps: Math.max(u.steps, before?.steps ?? 0),
      detail: u.detail,
      result: before?.result ?? '',
    };
    tasks.set(u.taskId, info);
    return info;
  }

  /** Replaces a task with the server's full view of it (which has the result). */
  set(sessionId: string, info: TaskInfo): void {
    this.tasksOf(sessionId).set(info.taskId, info);
  }

  get(sessionId: string, taskId: string): TaskInfo | undefined {
    return this.bySession.get(sessionId)?.get(taskId);
  }

  list(sessionId: string): TaskInfo[] {
    return [...(this.bySession.get(sessionId)?.values() ?? [])];
  }
}
