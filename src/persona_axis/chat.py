"""Chat formatting from the model's own template, with exact token spans of assistant content.

- System support is detected by rendering a sentinel system message, not from the model name;
  templates without it get the system text prepended to the first user turn.
- Templates that take ``enable_thinking`` get it switched off.
- Spans: each assistant message's content (as the template emits it, usually stripped) is
  located in the rendered text by an in-order search over all message contents, and mapped
  to tokens with the fast tokenizer's offsets. A token belongs to the content when its
  characters overlap it; role headers, end-of-turn tokens and padding never do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ChatTemplateError

Message = Mapping[str, str]
_SENTINEL = "PERSONA-AXIS-SYSTEM-SENTINEL-7f3a"


@dataclass(frozen=True)
class RenderedChat:
    text: str
    input_ids: list[int]
    assistant_spans: list[tuple[int, int]]  # [start, end) token indices, one per assistant message
    assistant_char_spans: list[tuple[int, int]]


def _content_forms(content: str) -> list[str]:
    forms = [content, content.strip()]
    return [f for i, f in enumerate(forms) if f and f not in forms[:i]]


class ChatFormat:
    """Renders conversations for one tokenizer; cheap to construct, detection runs once."""

    def __init__(self, tokenizer: Any, chat_template: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.template = chat_template or getattr(tokenizer, "chat_template", None)
        if not self.template:
            raise ChatTemplateError(
                f"{type(tokenizer).__name__} has no chat template; pass chat_template= or set tokenizer.chat_template"
            )
        self.template_kwargs: dict[str, Any] = {}
        if "enable_thinking" in self.template:
            self.template_kwargs["enable_thinking"] = False
        self.supports_system = self._detect_system()

    def _apply(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        try:
            return self.tokenizer.apply_chat_template(
                list(messages),
                chat_template=self.template,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
                **self.template_kwargs,
            )
        except Exception as exc:  # jinja raises TemplateError, templates raise their own
            roles = [m.get("role") for m in messages]
            raise ChatTemplateError(f"chat template cannot render roles {roles}: {exc}") from None

    def _detect_system(self) -> bool:
        msgs = [{"role": "system", "content": _SENTINEL}, {"role": "user", "content": "hi"}]
        try:
            text = self._apply(msgs, add_generation_prompt=True)
        except ChatTemplateError:
            return False
        # templates that silently drop the system message count as not supporting it
        return _SENTINEL in text

    def normalise(self, messages: Sequence[Message]) -> list[dict[str, str]]:
        """Validate roles and fold a system message into the first user turn if needed."""
        out: list[dict[str, str]] = []
        for i, m in enumerate(messages):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise ChatTemplateError(f"messages[{i}]: expected {{'role', 'content'}}, got {m!r}")
            if m["role"] not in ("system", "user", "assistant"):
                raise ChatTemplateError(f"messages[{i}].role: unknown role {m['role']!r}")
            if not isinstance(m["content"], str):
                raise ChatTemplateError(f"messages[{i}].content: expected a string")
            out.append({"role": m["role"], "content": m["content"]})
        if out and out[0]["role"] == "system" and not self.supports_system:
            system = out.pop(0)["content"]
            if out and out[0]["role"] == "user":
                out[0] = {
                    "role": "user",
                    "content": f"{system}\n\n{out[0]['content']}" if system else out[0]["content"],
                }
            elif system:
                out.insert(0, {"role": "user", "content": system})
        return out

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
        return self._apply(self.normalise(messages), add_generation_prompt)

    def encode(self, messages: Sequence[Message], add_generation_prompt: bool = False) -> RenderedChat:
        msgs = self.normalise(messages)
        text = self._apply(msgs, add_generation_prompt)
        char_spans: list[tuple[int, int]] = []
        cursor = 0
        for i, m in enumerate(msgs):
            found = None
            for form in _content_forms(m["content"]):
                at = text.find(form, cursor)
                if at >= 0:
                    found = (at, at + len(form))
                    break
            if found is None:
                if m["content"].strip():
                    raise ChatTemplateError(
                        f"messages[{i}] ({m['role']}): content not found in the rendered template text"
                    )
                found = (cursor, cursor)
            cursor = found[1]
            if m["role"] == "assistant":
                char_spans.append(found)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        offsets = enc["offset_mapping"]
        spans = []
        for a, b in char_spans:
            toks = [t for t, (s, e) in enumerate(offsets) if e > s and s < b and e > a]
            spans.append((toks[0], toks[-1] + 1) if toks else (len(ids), len(ids)))
        return RenderedChat(text=text, input_ids=ids, assistant_spans=spans, assistant_char_spans=char_spans)

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of a conversation ready for the assistant's next turn."""
        text = self.render(messages, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
