"""Screenshots of dagen's pictures as a reviewer sees them: 900 px wide, as GitHub shows them.

Not part of CI and not a test dependency. It needs Debian's ``chromium``, and on
``PYTHONPATH`` the GFM renderer ``markdown-it-py`` (with ``mdit-py-plugins``) and
``Pillow`` (to trim the page). Mermaid blocks are drawn by a local ``mermaid.min.js``
(``npm install mermaid``; ``--mermaid-js``) when given, else shown as code, as GitHub
does where Mermaid is off. The CSS below imitates GitHub's Markdown style (its
fonts, 14 px comment text, bordered zebra tables); it is written here, not copied.

Usage::

    python -m bench.screenshots --markdown report.md --out docs/screenshots/report.png \\
        --mermaid-js node_modules/mermaid/dist/mermaid.min.js
    python -m bench.screenshots --image ranks.svg --out docs/screenshots/ranks.png
"""

from __future__ import annotations

import argparse
import html
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

WIDTH = 900
"""A GitHub pull-request page's width for comments and files, about."""

CSS = """
body { margin: 0; background: #ffffff; }
.markdown-body { box-sizing: border-box; width: 900px; padding: 16px 24px; color: #1f2328;
  font: 14px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", "Noto Sans", Helvetica, Arial,
  "Liberation Sans", sans-serif; word-wrap: break-word; }
.markdown-body h1, .markdown-body h2 { font-weight: 600; padding-bottom: .3em;
  border-bottom: 1px solid #d1d9e0; margin: 24px 0 16px; }
.markdown-body h1 { font-size: 2em; } .markdown-body h2 { font-size: 1.5em; }
.markdown-body p, .markdown-body ul, .markdown-body table, .markdown-body pre { margin: 0 0 16px; }
.markdown-body table { display: block; width: max-content; max-width: 100%; overflow: auto;
  border-spacing: 0; border-collapse: collapse; }
.markdown-body th { font-weight: 600; }
.markdown-body th, .markdown-body td { padding: 6px 13px; border: 1px solid #d1d9e0; }
.markdown-body tr:nth-child(2n) { background: #f6f8fa; }
.markdown-body code { padding: .2em .4em; font-size: 85%; background: #818b981f;
  border-radius: 6px; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; }
.markdown-body pre { padding: 16px; overflow: auto; font-size: 85%; line-height: 1.45;
  background: #f6f8fa; border-radius: 6px; }
.markdown-body pre code { padding: 0; background: transparent; font-size: 100%; }
.markdown-body img { max-width: 100%; box-sizing: content-box; }
.markdown-body pre.mermaid { background: #ffffff; text-align: center; }
"""


def _markdown_html(text: str, mermaid_js: Path | None) -> str:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    fence = md.renderer.rules["fence"]

    def render_fence(_self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        if token.info.strip() == "mermaid" and mermaid_js is not None:
            return f'<pre class="mermaid">{html.escape(token.content)}</pre>\n'
        return str(fence(tokens, idx, options, env))

    md.add_render_rule("fence", render_fence)
    body = md.render(text)
    script = ""
    if mermaid_js is not None:
        script = (
            f'<script src="{mermaid_js.resolve().as_uri()}"></script>'
            "<script>mermaid.initialize({startOnLoad: true, theme: 'default'});</script>"
        )
    return _page(body, script)


def _page(body: str, script: str = "") -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><style>{CSS}</style></head>'
        f'<body><article class="markdown-body">{body}</article>{script}</body></html>'
    )


def _shoot(page: str, out: Path, height: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "page.html"
        src.write_text(page, encoding="utf-8")
        raw = Path(tmp) / "shot.png"
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={tmp}/profile", f"--window-size={WIDTH},{height}",
            "--virtual-time-budget=15000", f"--screenshot={raw}", src.as_uri(),
        ]  # fmt: skip
        subprocess.run([chromium, *flags], check=True, capture_output=True, timeout=300)
        _trim(raw, out)


def _trim(raw: Path, out: Path) -> None:
    """Cut the blank page below the content, keep a 16 px margin."""
    from PIL import Image, ImageChops

    img = Image.open(raw).convert("RGB")
    blank = Image.new("RGB", img.size, (255, 255, 255))
    box = ImageChops.difference(img, blank).getbbox()
    bottom = min(img.height, (box[3] if box else img.height) + 16)
    out.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours are plenty for text and flat fills, and keep the PNG small for git.
    img.crop((0, 0, img.width, bottom)).quantize(colors=256).save(out, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", type=Path, help="a Markdown file, rendered as GitHub does")
    ap.add_argument("--image", type=Path, help="an SVG or PNG, shown as in a README")
    ap.add_argument("--mermaid-js", type=Path, help="a local mermaid.min.js")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--height", type=int, default=8000, help="page height before trimming")
    args = ap.parse_args()
    if args.markdown is not None:
        page = _markdown_html(args.markdown.read_text(encoding="utf-8"), args.mermaid_js)
    elif args.image is not None:
        page = _page(f'<p><img src="{args.image.resolve().as_uri()}"></p>')
    else:
        raise SystemExit("give --markdown or --image")
    _shoot(page, args.out, args.height)


if __name__ == "__main__":
    main()
