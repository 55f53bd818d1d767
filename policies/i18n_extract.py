"""Babel extractor for the policy words in the notice data files.

Registered as the ``notices`` extraction method (pyproject entry point), used by
``babel.cfg``. Yields the strings people read (names, notes, channel menu paths, FAQ
answers, ...), never the citations: quotes stay the notice's own words in every language.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import yaml

# Keys whose string values (or lists of strings) are shown to people.
SHOWN = {
    "name",
    "full_name",
    "title",
    "text",
    "how",
    "who",
    "where",
    "bring",
    "gives",
    "label",
    "topic",
    "duties",
    "columns",
    "answer",
    "summary",
}
HIDDEN = {
    "cite",
    "start_cite",
    "end_cite",
    "gives_cite",
    "subsidies_cite",
    "extra_cite",
    "aliases",
}

Extracted = tuple[int, str | None, str, list[str]]


def _walk(node: yaml.Node, key: str | None) -> Iterator[Extracted]:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else None
            if name not in HIDDEN:
                yield from _walk(v, name)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _walk(item, key)
    elif (
        isinstance(node, yaml.ScalarNode)
        and key in SHOWN
        and node.tag.endswith(":str")
        and node.value.strip()
    ):
        yield node.start_mark.line + 1, None, node.value, [f"notice data: {key}"]


def extract_notices(
    fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: dict[str, Any]
) -> Iterator[Extracted]:
    name = str(getattr(fileobj, "name", ""))
    if name.endswith("cases.yaml"):  # test data, never shown
        return
    root = yaml.compose(fileobj.read().decode("utf-8"))
    if root is None:
        return
    if name.endswith(".faq.yaml"):  # answers are shown; questions only feed the search
        yield from (x for x in _walk(root, None) if x[3] == ["notice data: answer"])
    else:
        yield from _walk(root, None)
