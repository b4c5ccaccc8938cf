// Catch-up: a ConversationChannel identifier with `since_seq` gets every
// message after it as new_message frames after the confirmation, then live
// events, with no gap and no duplicate, even while messages are being sent.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  connect,
  connectAndSubscribe,
  conversationChannel,
  createGroup,
  range,
  register,
  sendMessage,
  sleep,
} from "./helpers.mjs";

const seqsOf = (sub) => sub.messages.filter((m) => m.type === "new_message").map((m) => m.message.seq);

/** Waits until `sub` has seen seq `last`, lets stragglers arrive, returns all seqs. */
async function settle(sub, last) {
  await sub.next((m) => m.type === "new_message" && m.message.seq === last, {
    timeout: 15000,
    what: `new_message with seq ${last}`,
  });
  await sleep(300);
  return seqsOf(sub);
}

test("since_seq catch-up has no gaps or duplicates while another client sends", { timeout: 120000 }, async (t) => {
  const [alice, bob] = await Promise.all([register("cu_alice"), register("cu_bob")]);
  const conversation = await createGroup(alice, "Catch-up", [bob]);
  // A history long enough that a full catch-up takes several pages, so live
  // messages committed meanwhile are both in the catch-up and in the socket's
  // queue: the server must drop those duplicates.
  const HISTORY = 500;
  const contentOf = new Map();
  let next = 1;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next <= HISTORY) {
        const i = next++;
        const message = await sendMessage(alice, conversation, `early ${i}`);
        contentOf.set(message.seq, message.content);
      }
    }),
  );
  assert.deepEqual(
    [...contentOf.keys()].sort((a, b) => a - b),
    range(1, HISTORY),
    "seq counts from 1 in each conversation, without gaps",
  );

  // Bob sends 150 more, one after another (so live events come in seq
  // order), while clients subscribe with since_seq at different moments.
  const LIVE = 150;
  let sentCount = 0;
  let lastSeq = HISTORY;
  let senderError;
  const sender = (async () => {
    for (let i = 1; i <= LIVE; i++) {
      const message = await sendMessage(bob, conversation, `live ${i}`);
      contentOf.set(message.seq, message.content);
      lastSeq = message.seq;
      sentCount = i;
    }
  })();
  sender.catch((error) => {
    senderError = error;
  });
  const waitForSent = async (count) => {
    while (sentCount < count) {
      if (senderError) throw senderError;
      await sleep(2);
    }
  };

  const subscribers = [];
  for (const [afterSent, sinceSeq] of [
    [1, 0],
    [10, 250],
    [25, 0],
    [40, 490],
    [60, 0],
    [80, 100],
    [100, 0],
    [120, 599],
  ]) {
    await waitForSent(afterSent);
    const client = connect(t, alice.token, `since_${sinceSeq}`);
    subscribers.push({
      sinceSeq,
      client,
      sub: client.subscribe(conversationChannel(conversation, { since_seq: sinceSeq })),
    });
  }
  await sender;
  assert.equal(lastSeq, HISTORY + LIVE);

  for (const { sinceSeq, client, sub } of subscribers) {
    await sub.confirmed();
    const seqs = await settle(sub, lastSeq);
    assert.deepEqual(seqs, range(sinceSeq + 1, lastSeq), `since_seq ${sinceSeq}: seqs in order, no gap, no duplicate`);
    // The catch-up comes after the confirmation.
    const frames = client.raw.items;
    const confirmAt = frames.findIndex(
      (f) => f.json?.type === "confirm_subscription" && f.json.identifier === sub.identifier,
    );
    const firstMessageAt = frames.findIndex((f) => f.json?.message?.type === "new_message");
    assert.ok(confirmAt >= 0 && confirmAt < firstMessageAt, "confirm_subscription precedes the catch-up");
    // Catch-up frames are the same new_message events as the live ones.
    for (const event of sub.messages.items) {
      assert.equal(event.message.content, contentOf.get(event.message.seq));
      assert.equal(event.message.conversation_id, conversation);
    }
  }
});

test("since_seq at the head sends nothing old, and a later message once", async (t) => {
  const [alice, bob] = await Promise.all([register("cu2_alice"), register("cu2_bob")]);
  const conversation = await createGroup(alice, "Head", [bob]);
  for (let i = 1; i <= 5; i++) await sendMessage(alice, conversation, `m${i}`);
  const { sub } = await connectAndSubscribe(t, bob.token, conversationChannel(conversation, { since_seq: 5 }));
  await sub.messages.none(() => true, 300, { what: "catch-up beyond the head" });
  const next = await sendMessage(alice, conversation, "m6");
  assert.deepEqual(await settle(sub, next.seq), [6]);
});

test("without since_seq there is no catch-up; since_seq 0 replays everything", async (t) => {
  const [alice, bob] = await Promise.all([register("cu3_alice"), register("cu3_bob")]);
  const conversation = await createGroup(alice, "Replay", [bob]);
  for (let i = 1; i <= 3; i++) await sendMessage(alice, conversation, `m${i}`);
  const plain = await connectAndSubscribe(t, bob.token, conversationChannel(conversation));
  const replay = await connectAndSubscribe(t, bob.token, conversationChannel(conversation, { since_seq: 0 }));
  const next = await sendMessage(alice, conversation, "m4");
  assert.deepEqual(await settle(plain.sub, next.seq), [4]);
  assert.deepEqual(await settle(replay.sub, next.seq), [1, 2, 3, 4]);
});
