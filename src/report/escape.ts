/**
 * Escaping for the three places data text lands in a report: HTML text/attributes, a JSON data block inside
 * <script>, and Markdown table cells. Tokens come from arbitrary datasets, so every one of these must hold
 * for any string (markup, quotes, control characters, bidi overrides).
 */

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes text for HTML element content and for quoted attribute values alike. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => HTML_ESCAPES[ch]!);
}

/**
 * Makes invisible characters visible: newline ↵, tab →, carriage return ␍, other control characters as their
 * Unicode control pictures, and bidi/zero-width format characters as ⟨U+XXXX⟩ (they could otherwise reorder
 * or hide neighbouring text). With `spaces`, spaces become · (for tokens shown alone, where a leading space
 * matters and would otherwise be invisible).
 */
export function visibleWhitespace(text: string, opts: { spaces?: boolean } = {}): string {
  let out = '';
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (ch === '\n') out += '↵';
    else if (ch === '\t') out += '→';
    else if (ch === '\r') out += '␍';
    else if (ch === ' ') out += opts.spaces ? '·' : ' ';
    else if (code < 0x20) out += String.fromCodePoint(0x2400 + code);
    else if (code === 0x7f) out += '␡';
    else if (isFormatChar(code)) out += `⟨U+${code.toString(16).toUpperCase().padStart(4, '0')}⟩`;
    else out += ch;
  }
  return out;
}

// Zero-width and bidirectional-control characters (Unicode category Cf that affect layout), plus BOM.
function isFormatChar(code: number): boolean {
  return (
    (code >= 0x200b && code <= 0x200f) ||
    (code >= 0x202a && code <= 0x202e) ||
    (code >= 0x2060 && code <= 0x2069) ||
    code === 0xfeff ||
    code === 0x00ad
  );
}

/**
 * JSON for a `<script type="application/json">` block. `<`, `>` and `&` become \u escapes, so neither
 * `</script>` nor `<!--` can appear in the block whatever the strings hold; U+2028/2029 are escaped too so
 * the text is also valid JavaScript. JSON.parse restores every string exactly.
 */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * Text for a GFM table cell: HTML-significant characters as entities (renderers pass raw HTML through),
 * inline Markdown punctuation backslash-escaped, pipes escaped so they cannot split the cell, and whitespace
 * made visible so a newline cannot end the row. Block-level markers (#, -, 1.) need no escaping inside a cell
 * or after a label, which is the only place the report puts data text.
 */
export function escapeMarkdownCell(text: string, opts: { spaces?: boolean } = {}): string {
  return visibleWhitespace(text, opts)
    .replace(/[\\`*_[\]|~]/g, (ch) => `\\${ch}`)
    .replace(/[&<>]/g, (ch) => HTML_ESCAPES[ch]!);
}
