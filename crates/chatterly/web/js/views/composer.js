// The message box: Enter sends, Shift+Enter starts a new line, ArrowUp in an
// empty box edits one's last message. Tells the others we are typing.
// Files attach by the paperclip, by dropping them on the conversation, or by
// pasting; each uploads at once (with a progress bar) and waits in the box,
// removable, until the message is sent with them.

import * as actions from "../actions.js";
import { h, icon, replace, toast } from "../dom.js";
import { fileSize } from "../format.js";
import { state } from "../state.js";
import { attachmentImage } from "./attachments.js";

/** The most attachments one message may carry (the server's limit). */
const MAX_ATTACHMENTS = 10;

let composers = 0;

export function composer({ conversationId, label, parentId = null, onArrowUp = null, onSent = null, dropZones = [] }) {
  const id = `composer-${++composers}`;
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
    onpaste: (event) => {
      const files = [...(event.clipboardData?.files || [])];
      if (!files.length) return;
      event.preventDefault();
      attach(files);
    },
  });

  // ---- attachments waiting to be sent ----

  /** In order: {key, file, progress, attachment, error, upload}. */
  const uploads = [];
  let nextKey = 0;
  const tray = h("ul.pending-attachments", { "aria-label": "Attachments to send", hidden: true });
  const picker = h("input", {
    type: "file",
    multiple: true,
    hidden: true,
    id: `${id}-files`,
    "aria-label": "Attach files",
    onchange: () => {
      attach([...picker.files]);
      picker.value = "";
    },
  });
  const attachButton = h(
    "button.icon-button.attach",
    { type: "button", "aria-label": "Attach files", title: "Attach files (or drop or paste them)", onclick: () => picker.click() },
    icon("clip"),
  );

  function attach(files) {
    for (const file of files) {
      if (uploads.length >= MAX_ATTACHMENTS) {
        toast(`A message can carry at most ${MAX_ATTACHMENTS} files`, "error");
        break;
      }
      const limit = state.config.max_upload_bytes;
      if (limit && file.size > limit) {
        toast(`${file.name} is too large (at most ${fileSize(limit)})`, "error");
        continue;
      }
      start({ key: ++nextKey, file, progress: 0, attachment: null, error: null, upload: null });
    }
    renderTray();
  }

  function start(entry) {
    if (!uploads.includes(entry)) uploads.push(entry);
    entry.error = null;
    entry.progress = 0;
    entry.upload = actions.uploadAttachment(entry.file, (fraction) => {
      entry.progress = fraction;
      const bar = tray.querySelector(`[data-key="${entry.key}"] progress`);
      if (bar) bar.value = Math.round(fraction * 100);
    });
    entry.upload.done.then(
      (attachment) => {
        entry.attachment = attachment;
        entry.upload = null;
        renderTray();
      },
      (error) => {
        if (!uploads.includes(entry)) return;
        entry.error = error.message;
        entry.upload = null;
        renderTray();
      },
    );
  }

  function remove(entry) {
    entry.upload?.abort();
    uploads.splice(uploads.indexOf(entry), 1);
    renderTray();
    input.focus();
  }

  function chip(entry) {
    const { file, attachment } = entry;
    const name = attachment?.name || file.name;
    const preview = attachment?.thumbnail_url
      ? attachmentImage(attachment, { thumbnail: true })
      : h("span.file-icon", { "aria-hidden": "true" }, icon("file"));
    const status = entry.upload
      ? h("progress", { max: 100, value: Math.round(entry.progress * 100), "aria-label": `Uploading ${name}` })
      : entry.error
        ? h(
            "span.upload-error",
            { role: "alert" },
            `Not uploaded: ${entry.error} `,
            h("button.small", { type: "button", onclick: () => (start(entry), renderTray()) }, "Retry"),
          )
        : h("span.hint", {}, fileSize(attachment.size));
    return h(
      "li.pending-attachment",
      { dataset: { key: entry.key }, class: entry.upload ? "uploading" : entry.error ? "failed" : "ready" },
      preview,
      h("span.attachment-name", { title: name }, name),
      status,
      h("button.icon-button.small", { type: "button", "aria-label": `Remove ${name}`, title: "Remove", onclick: () => remove(entry) }, icon("close")),
    );
  }

  function renderTray() {
    tray.hidden = uploads.length === 0;
    replace(tray, uploads.map(chip));
  }

  // ---- sending ----

  function grow() {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  }

  function send() {
    const content = input.value.trim();
    if (uploads.some((u) => u.upload)) {
      toast("Wait for the files to finish uploading");
      return;
    }
    if (uploads.some((u) => u.error)) {
      toast("Retry or remove the files that did not upload", "error");
      return;
    }
    const attachments = uploads.map((u) => u.attachment);
    if (!content && !attachments.length) return;
    actions.stopComposing(conversationId);
    actions.sendMessage(conversationId, content, parentId, attachments);
    input.value = "";
    uploads.length = 0;
    renderTray();
    grow();
    onSent?.();
  }

  const form = h(
    "form.composer",
    { onsubmit: (event) => (event.preventDefault(), send()) },
    tray,
    h(
      "div.composer-row",
      {},
      attachButton,
      picker,
      input,
      h("button.send", { type: "submit", "aria-label": "Send", title: "Send (Enter)" }, icon("send")),
    ),
  );

  // ---- dropping files on the conversation ----

  const zones = [form, ...dropZones];
  const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  for (const zone of zones) {
    zone.addEventListener("dragover", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("dropping");
    });
    zone.addEventListener("dragleave", (event) => {
      if (!zone.contains(event.relatedTarget)) zone.classList.remove("dropping");
    });
    zone.addEventListener("drop", (event) => {
      for (const z of zones) z.classList.remove("dropping");
      if (!carriesFiles(event)) return;
      event.preventDefault();
      attach([...event.dataTransfer.files]);
      input.focus();
    });
  }

  return { el: form, focus: () => input.focus(), input };
}
