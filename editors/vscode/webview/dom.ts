/**
 * A minimal element builder: text goes in as text nodes, never as HTML, so nothing
 * the model or a command prints can inject markup. Only markdown.ts produces HTML.
 */

type Child = Node | string | null | undefined | false;
type Props = {
  class?: string;
  text?: string;
  title?: string;
  role?: string;
  tabIndex?: number;
  hidden?: boolean;
  disabled?: boolean;
  type?: string;
  value?: string;
  placeholder?: string;
  rows?: number;
  open?: boolean;
  selected?: boolean;
  aria?: Record<string, string>;
  data?: Record<string, string>;
  on?: { [K in keyof HTMLElementEventMap]?: (event: HTMLElementEventMap[K]) => void };
};

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props.class) el.className = props.class;
  if (props.text !== undefined) el.textContent = props.text;
  if (props.title) el.title = props.title;
  if (props.role) el.setAttribute('role', props.role);
  if (props.tabIndex !== undefined) el.tabIndex = props.tabIndex;
  if (props.hidden) el.hidden = true;
  for (const key of ['disabled', 'type', 'value', 'placeholder', 'rows', 'open', 'selected'] as const) {
    const value = props[key];
    if (value !== undefined) (el as unknown as Record<string, unknown>)[key] = value;
  }
  for (const [k, v] of Object.entries(props.aria ?? {})) el.setAttribute(`aria-${k}`, v);
  for (const [k, v] of Object.entries(props.data ?? {})) el.dataset[k] = v;
  for (const [name, handler] of Object.entries(props.on ?? {})) {
    el.addEventListener(name, handler as EventListener);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}

/** A button with a visible label (and the same accessible name unless `label` says otherwise). */
export function button(text: string, onClick: () => void, opts: { class?: string; title?: string; label?: string } = {}): HTMLButtonElement {
  const props: Props = { type: 'button', class: opts.class ?? 'btn', text, on: { click: () => onClick() } };
  if (opts.title) props.title = opts.title;
  if (opts.label) props.aria = { label: opts.label };
  return h('button', props);
}

/** Replaces the children of `el`. */
export function replaceChildren(el: Element, ...children: Child[]): void {
  el.replaceChildren(...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false));
}
