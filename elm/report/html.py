"""Markdown -> HTML: the report page as one standalone HTML file."""

from __future__ import annotations

import html
import re

_CSS = (
    "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;"
    "line-height:1.45;color:#222}h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;"
    "margin-top:1.8em}table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;"
    "padding:.3em .6em;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;"
    "padding:0 .2em;border-radius:3px}pre{background:#f6f6f6;padding:.8em;overflow-x:auto}"
)


def markdown_to_html(md: str, title: str = "ELM evaluation report") -> str:
    """A standalone HTML page of the Markdown this module writes (Python-Markdown when installed, else a small
    converter for exactly that subset)."""
    try:
        import markdown
    except ImportError:
        body = simple_markdown(md)
    else:
        body = markdown.markdown(md, extensions=["tables", "fenced_code"], output_format="html")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


_INLINE = re.compile(
    r"\\(?P<esc>[!-/:-@\[-`{-~])"
    r"|`(?P<code>[^`]*)`"
    r"|!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)"
    r"|\[(?P<text>[^\]]*)\]\((?P<href>[^)\s]+)\)"
    r"|\*\*(?P<bold>.+?)\*\*"
    r"|\*(?P<em>[^*\s][^*]*?)\*"
    r"|(?P<entity>&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);)"
)


def _inline(s: str) -> str:
    out, pos = [], 0
    for m in _INLINE.finditer(s):
        out.append(html.escape(s[pos:m.start()], quote=False))
        g = m.groupdict()
        if g["esc"] is not None:
            out.append(html.escape(g["esc"], quote=False))
        elif g["code"] is not None:
            out.append(f"<code>{html.escape(g['code'], quote=False)}</code>")
        elif g["src"] is not None:
            out.append(f'<img alt="{html.escape(g["alt"])}" src="{html.escape(g["src"])}" />')
        elif g["href"] is not None:
            out.append(f'<a href="{html.escape(g["href"])}">{_inline(g["text"])}</a>')
        elif g["bold"] is not None:
            out.append(f"<strong>{_inline(g['bold'])}</strong>")
        elif g["em"] is not None:
            out.append(f"<em>{_inline(g['em'])}</em>")
        else:
            out.append(g["entity"])
        pos = m.end()
    out.append(html.escape(s[pos:], quote=False))
    return "".join(out)


def _cells(row: str) -> list[str]:
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)]


def simple_markdown(md: str) -> str:
    """HTML of the Markdown subset this module writes: headings, paragraphs, GFM tables, fenced code, inline
    code, bold, emphasis, links, images, backslash escapes and entities. Not a general Markdown converter."""
    lines = md.split("\n")
    out: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1:j]), quote=False)}</code></pre>")
            i = j + 1
            continue
        if m := re.match(r"^(#{1,6}) (.*)$", line):
            flush()
            k = len(m.group(1))
            out.append(f"<h{k}>{_inline(m.group(2))}</h{k}>")
        elif line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1].strip()):
            flush()
            header = _cells(line)
            aligns = ["right" if c.endswith(":") else "" for c in _cells(lines[i + 1])]
            style = [f' style="text-align: {a};"' if a else "" for a in aligns]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            th = "".join(f"<th{style[k] if k < len(style) else ''}>{_inline(c)}</th>" for k, c in enumerate(header))
            body = "".join("<tr>" + "".join(f"<td{style[k] if k < len(style) else ''}>{_inline(c)}</td>"
                                            for k, c in enumerate(r)) + "</tr>\n" for r in rows)
            out.append(f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>")
            continue
        elif not line.strip():
            flush()
        else:
            para.append(line.strip())
        i += 1
    flush()
    return "\n".join(out)
