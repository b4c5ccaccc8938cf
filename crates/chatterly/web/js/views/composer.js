// The message box: Enter sends, Shift+Enter starts a new line, ArrowUp in an
// empty box edits one's last message. Tells the others we are typing.

import * as actions from "../actions.js";
import { h, icon } from "../dom.js";
import { state } from "../state.js";

export function composer({ conversationId, label, parentId = null, onArrowUp = null, onSent = null }) {
  const input = h("textarea", {
    rows: 1,
    "aria-label": label,
    placeholder: label,
    maxlength: state.config.max_message_chars,
    oninput: () => {
      grow();
      actions.composing(conversationId, input.value.trim().length > 0);
    },
    onblur: () => actions.stopComposing(conversationId),
    onkeydown: (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        send();
      } else if (event.key === "ArrowUp" && !input.value && onArrowUp) {
        event.preventDefault();
        onArrowUp();
      }
    },
  });

  function grow() {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  }

  function send() {
    const content = input.value.trim();
    if (!content) return;
    actions.stopComposing(conversationId);
    actions.sendMessage(conversationId, content, parentId);
    input.value = "";
    grow();
    onSent?.();
  }

  const form = h(
    "form.composer",
    { onsubmit: (event) => (event.preventDefault(), send()) },
    input,
    h("button.send", { type: "submit", "aria-label": "Send", title: "Send (Enter)" }, icon("send")),
  );
  return { el: form, focus: () => input.focus(), input };
}
