/**
 * Markdown to HTML for assistant replies, safe to assign to `innerHTML`.
 *
 * markdown-it with raw HTML off escapes every tag the model writes; images are off so
 * a reply can never make the page fetch anything (the CSP would block it anyway), and
 * links may only point at http(s) or mailto.
 */

import MarkdownIt from 'markdown-it';

const SAFE_LINK = /^(https?:|mailto:)/i;

const md = new MarkdownIt({ html: false, linkify: false, typographer: false, breaks: false });
md.disable(['image']);
md.validateLink = (url: string): boolean => SAFE_LINK.test(url.trim());

// Links open outside the page (VS Code routes them to the browser); never as a referrer.
const defaultLinkOpen = md.renderer.rules.link_open;
md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
  const token = tokens[idx];
  if (token) {
    token.attrSet('rel', 'noopener noreferrer');
    token.attrSet('target', '_blank');
  }
  return defaultLinkOpen ? defaultLinkOpen(tokens, idx, options, env, self) : self.renderToken(tokens, idx, options);
};

/** Renders Markdown to sanitised HTML. */
export function renderMarkdown(source: string): string {
  return md.render(source);
}
