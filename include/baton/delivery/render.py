"""Render a campaign's message block for one person, in Jinja's sandbox.

Every string of a block (SPEC §1) is a Jinja template over the *context*: the
customer's attributes (the keys of ``customers.attributes``), then the customer's
columns (``customer_id``, ``email``, ``first_name``…), then the candidate's payload
(the extra columns of the audience query), then ``unsubscribe_url`` — later ones win
on a name clash.  :func:`message_context` builds it.

Rendering uses :class:`jinja2.sandbox.ImmutableSandboxedEnvironment` (no access to
Python internals such as ``''.__class__``, no mutation of the context) with
``StrictUndefined``: a missing variable is an error, never an empty string.  HTML
(``html`` and ``template`` files) is autoescaped; subjects and texts are not.

A failure is a :class:`~baton.errors.TerminalDeliveryError` naming the field, e.g.
``message.email.subject: 'item_name' is undefined`` — it fails that one message,
never the batch.  Compiled templates are cached per :class:`Renderer`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateNotFound
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel

from baton.errors import TerminalDeliveryError

__all__ = ["FIELDS", "Renderer", "html_to_text", "message_context", "render_message"]

FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # channel: (required fields, optional fields) of the rendered content
    "email": (("subject",), ("html", "template", "text")),
    "sms": (("text",), ()),
    "push": (("title", "body"), ("url",)),
    "audience": (("list",), ()),
    "direct_mail": (("creative",), ()),
}
_HTML_FIELDS = frozenset({"html", "template"})
_CACHE_SIZE = 512


def message_context(
    customer: Mapping[str, Any] | Any,
    payload: Mapping[str, Any] | None = None,
    *,
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """The template context of one message.

    *customer* is a ``customers`` row (a mapping; its ``attributes`` JSON is spread
    into the context) or a :class:`~baton.delivery.base.Recipient`; *payload* is the
    candidate's payload.  Precedence, lowest first: attributes, customer columns,
    payload, ``unsubscribe_url``.
    """
    if is_dataclass(customer) and not isinstance(customer, type):
        row: Mapping[str, Any] = asdict(customer)
    elif isinstance(customer, Mapping):
        row = customer
    else:
        raise TypeError(f"customer must be a mapping or a Recipient, not {type(customer).__name__}")
    context: dict[str, Any] = {}
    attributes = row.get("attributes")
    if isinstance(attributes, Mapping):
        context.update(attributes)
    context.update((k, v) for k, v in row.items() if k != "attributes")
    if payload:
        context.update(payload)
    if unsubscribe_url is not None:
        context["unsubscribe_url"] = unsubscribe_url
    return context


def _block_fields(block: Mapping[str, Any] | BaseModel) -> dict[str, str]:
    if isinstance(block, BaseModel):
        data = block.model_dump(exclude_none=True)
    elif isinstance(block, Mapping):
        data = {k: v for k, v in block.items() if v is not None}
    else:
        raise TypeError(f"block must be a mapping or a message block model, not {type(block).__name__}")
    return {str(k): str(v) for k, v in data.items()}


def _template_line(exc: BaseException, filename: str | None) -> int | None:
    """The line of the template where *exc* happened (Jinja rewrites tracebacks to template lines)."""
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    tb: TracebackType | None = exc.__traceback__
    found = None
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name == filename or (filename is None and name == "<template>"):
            found = tb.tb_lineno
        tb = tb.tb_next
    return found


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TemplateNotFound):
        return f"template {exc.name!r} not found"
    text = str(exc) or type(exc).__name__
    return text.replace("\n", " ")


class Renderer:
    """Renders message blocks with templates from *templates_dir*, caching compiled templates.

    Thread-safe; keep one per templates folder (``render_message`` does).
    """

    def __init__(self, templates_dir: Path | str | None) -> None:
        self.templates_dir = Path(templates_dir) if templates_dir is not None else None
        loader = FileSystemLoader(str(self.templates_dir)) if self.templates_dir is not None else None
        common: dict[str, Any] = {
            "undefined": StrictUndefined,
            "loader": loader,
            "keep_trailing_newline": True,
        }
        self._text = ImmutableSandboxedEnvironment(autoescape=False, **common)
        self._html = ImmutableSandboxedEnvironment(autoescape=True, **common)
        self._compiled: dict[tuple[bool, str], Template] = {}
        self._lock = threading.Lock()

    def _from_string(self, source: str, html: bool) -> Template:
        key = (html, source)
        with self._lock:
            template = self._compiled.get(key)
        if template is None:
            template = (self._html if html else self._text).from_string(source)
            with self._lock:
                if len(self._compiled) >= _CACHE_SIZE:
                    self._compiled.pop(next(iter(self._compiled)))
                self._compiled[key] = template
        return template

    def _field(self, channel: str, name: str, source: str, context: Mapping[str, Any]) -> str:
        where = f"message.{channel}.{name}"
        filename: str | None = None
        try:
            if name == "template":
                if self.templates_dir is None:
                    raise TerminalDeliveryError(f"{where}: no templates folder configured for {source!r}")
                template = self._html.get_template(source)
                filename = template.filename
            else:
                template = self._from_string(source, name in _HTML_FIELDS)
            return template.render(context)
        except TerminalDeliveryError:
            raise
        except Exception as exc:  # any template failure fails this one message
            line = _template_line(exc, filename)
            if name == "template":
                at = f" ({source}, line {line})" if line is not None else f" ({source})"
            else:
                at = f" (line {line})" if line is not None and "\n" in source.strip() else ""
            raise TerminalDeliveryError(f"{where}{at}: {_reason(exc)}") from exc

    def render(
        self, channel: str, block: Mapping[str, Any] | BaseModel, context: Mapping[str, Any]
    ) -> dict[str, str]:
        """The rendered content of *block* for *channel* (see ``OutboundMessage.content``)."""
        channel = str(getattr(channel, "value", channel))
        if channel not in FIELDS:
            raise TerminalDeliveryError(f"message.{channel}: unknown channel (known: {', '.join(FIELDS)})")
        required, optional = FIELDS[channel]
        fields = _block_fields(block)
        missing = [f for f in required if f not in fields]
        if missing:
            raise TerminalDeliveryError(f"message.{channel}: the block has no {', '.join(missing)}")
        out: dict[str, str] = {}
        for name in (*required, *optional):
            if name in fields:
                out["html" if name == "template" else name] = self._field(
                    channel, name, fields[name], context
                )
        if channel == "email":
            if "html" not in out:
                raise TerminalDeliveryError("message.email: the block has neither html nor template")
            out["subject"] = " ".join(out["subject"].split())
            url = context.get("unsubscribe_url")
            if url:
                out["unsubscribe_url"] = str(url)
        elif channel in ("push", "sms", "audience", "direct_mail"):
            for name in ("title", "list", "creative", "url"):
                if name in out:
                    out[name] = out[name].strip()
        return out


_renderers: dict[str, Renderer] = {}
_renderers_lock = threading.Lock()


def renderer_for(templates_dir: Path | str | None) -> Renderer:
    """The shared :class:`Renderer` of *templates_dir* (one per folder per process)."""
    key = str(Path(templates_dir).resolve()) if templates_dir is not None else ""
    with _renderers_lock:
        renderer = _renderers.get(key)
        if renderer is None:
            renderer = _renderers[key] = Renderer(templates_dir)
        return renderer


def render_message(
    channel: str,
    block: Mapping[str, Any] | BaseModel,
    context: Mapping[str, Any],
    templates_dir: Path | str | None,
) -> dict[str, str]:
    """Render *block* (a dict or a ``baton.spec`` message block) for *channel* with *context*.

    Returns the content of an :class:`~baton.delivery.base.OutboundMessage`: email
    ``subject``, ``html`` (inline or from ``template``), ``text`` when the block has one,
    ``unsubscribe_url`` when the context has one; sms ``text``; push ``title``, ``body``,
    ``url``; audience ``list``; direct_mail ``creative``.  Raises TerminalDeliveryError
    naming the field on any template error or missing variable.
    """
    return renderer_for(templates_dir).render(channel, block, context)


# --- HTML to text -------------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd div dl dt footer form h1 h2 h3 h4 h5 h6 header hr li main nav "
    "ol p pre section table tbody td th thead tfoot tr ul".split()
)
_SKIP_TAGS = frozenset({"head", "script", "style", "title", "template", "noscript"})
_VOID_TAGS = frozenset("area base br col embed hr img input link meta source track wbr".split())
_HIDDEN = re.compile(r"display\s*:\s*none", re.I)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip: list[str] = []  # open tags whose content is not shown
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if self._skip:
            if tag not in _VOID_TAGS:
                self._skip.append(tag)
            return
        if tag in _SKIP_TAGS or _HIDDEN.search(attr.get("style") or ""):
            if tag not in _VOID_TAGS:
                self._skip.append(tag)
            return
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        if tag == "a":
            self._links.append((attr.get("href"), len(self.parts)))
        if tag == "img" and attr.get("alt"):
            self.parts.append(attr["alt"] or "")

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag == self._skip[-1]:
                self._skip.pop()
            return
        if tag == "a" and self._links:
            href, start = self._links.pop()
            label = " ".join("".join(self.parts[start:]).split())
            if href and not href.startswith(("#", "mailto:", "javascript:")) and href != label:
                self.parts.append(f" ({href})" if label else href)
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML email: hidden and head content dropped, links as ``label (url)``."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n" if text else ""
