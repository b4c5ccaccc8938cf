// A message's attachments: images as previews (their thumbnail; a click
// shows the whole image in a lightbox), other files as cards with name, size
// and a download link.

import { attachmentHref } from "../api.js";
import { h, icon } from "../dom.js";
import { fileSize } from "../format.js";

/** Whether the server could show it as a picture (it made a thumbnail). */
export const isImage = (attachment) => Boolean(attachment.thumbnail_url);

/** The attachment's thumbnail (or whole image), sized before it loads. */
export function attachmentImage(attachment, { thumbnail = true } = {}) {
  const src = attachmentHref(thumbnail ? attachment.thumbnail_url : attachment.url);
  const size = attachment.width && attachment.height ? { width: attachment.width, height: attachment.height } : {};
  return h("img", { src, alt: attachment.name, loading: "lazy", decoding: "async", ...size });
}

function fileCard(attachment) {
  return h(
    "div.file-card",
    {},
    h("span.file-icon", { "aria-hidden": "true" }, icon("file")),
    h(
      "span.file-text",
      {},
      h("span.attachment-name", { title: attachment.name }, attachment.name),
      h("span.hint", {}, fileSize(attachment.size)),
    ),
    h(
      "a.button.small",
      { href: attachmentHref(attachment.url), download: attachment.name, "aria-label": `Download ${attachment.name}` },
      "Download",
    ),
  );
}

function imagePreview(attachment) {
  return h(
    "button.image-preview",
    { type: "button", "aria-label": `View ${attachment.name}`, title: attachment.name, onclick: () => lightbox(attachment) },
    attachmentImage(attachment),
  );
}

/** The attachments of message `m`, or null when it has none. */
export function renderAttachments(m) {
  const list = m.attachments || [];
  if (!list.length) return null;
  return h(
    "ul.attachments",
    { "aria-label": list.length === 1 ? "Attachment" : `${list.length} attachments` },
    list.map((a) => h("li", {}, isImage(a) ? imagePreview(a) : fileCard(a))),
  );
}

/** The whole image over the page; Escape, the button or a click outside closes it. */
export function lightbox(attachment) {
  const href = attachmentHref(attachment.url);
  const dialog = h(
    "dialog.lightbox",
    {
      "aria-label": attachment.name,
      onclose: () => dialog.remove(),
      onclick: (event) => event.target === dialog && dialog.close(),
    },
    h("img", { src: href, alt: attachment.name }),
    h(
      "div.lightbox-bar",
      {},
      h("span.attachment-name", {}, attachment.name),
      h("span.hint", {}, fileSize(attachment.size)),
      h("a.button.small", { href, target: "_blank", rel: "noopener" }, "Open in new tab"),
      h("a.button.small", { href, download: attachment.name }, "Download"),
      h("button.small", { type: "button", onclick: () => dialog.close() }, "Close"),
    ),
  );
  document.body.append(dialog);
  dialog.showModal();
}
