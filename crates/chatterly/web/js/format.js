// Names, initials and times, in the viewer's locale.

export function displayName(user) {
  if (!user) return "Someone";
  return (user.display_name && user.display_name.trim()) || user.username || "Someone";
}

export function initials(user) {
  const name = displayName(user);
  const parts = name.split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : name.slice(0, 2);
  return letters.toUpperCase();
}

/** One of eight avatar colours, stable per user. */
export function hue(id) {
  return `hue-${Math.abs(Number(id) || 0) % 8}`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const shortDate = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

export function time(iso) {
  return timeFormat.format(new Date(iso));
}

export function fullTime(iso) {
  return fullFormat.format(new Date(iso));
}

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
}

export function sameDay(a, b) {
  return startOfDay(new Date(a)) === startOfDay(new Date(b));
}

/** "Today", "Yesterday" or a date, for day dividers. */
export function dayLabel(iso) {
  const day = startOfDay(new Date(iso));
  const today = startOfDay(new Date());
  if (day === today) return "Today";
  if (day === today - 86400000) return "Yesterday";
  return dateFormat.format(new Date(iso));
}

/** A time for today, else a short date (conversation list). */
export function when(iso) {
  if (!iso) return "";
  return sameDay(iso, Date.now()) ? time(iso) : shortDate.format(new Date(iso));
}

export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m % 60)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

/** The title of a conversation as `me` sees it. */
export function conversationTitle(conversation, me) {
  if (conversation.conversation_type === "direct") {
    const other = conversation.members.find((m) => m.id !== me?.id);
    return other ? displayName(other) : "Just you";
  }
  return conversation.name || "Untitled";
}

/** The other person of a direct conversation. */
export function directPeer(conversation, me) {
  if (conversation.conversation_type !== "direct") return null;
  return conversation.members.find((m) => m.id !== me?.id) || null;
}

const sizeFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

/** A byte count for people: "812 bytes", "1.4 MB" (powers of 1,024). */
export function fileSize(bytes) {
  const units = ["KB", "MB", "GB", "TB"];
  let value = Number(bytes) || 0;
  if (value < 1024) return `${value} ${value === 1 ? "byte" : "bytes"}`;
  let unit = -1;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${sizeFormat.format(value)} ${units[unit]}`;
}
