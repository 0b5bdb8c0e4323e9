"""One self-contained interactive HTML page of saved VAL runs (``val-probing html``).

:func:`write_html` (the API) loads runs, builds the page and writes it atomically; :func:`page_data`
is the pure part (loaded results -> the JSON the page's script draws) and :func:`render_html` puts
that JSON, the script and the style into one file. The page needs no network: every script and
style is inlined, a Content-Security-Policy forbids any request, and the data is plain JSON in a
``<script type="application/json">`` element. What it shows is in docs/plots.md.
"""

from val_probing.webpage.data import DEFAULT_ANSWER_CHARS, PAGE_FORMAT, page_data
from val_probing.webpage.page import render_html, write_html

__all__ = ["DEFAULT_ANSWER_CHARS", "PAGE_FORMAT", "page_data", "render_html", "write_html"]
