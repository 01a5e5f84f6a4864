"use strict";
// Schedules two messages for "delayMs" from now, cancels the second, peeks the queue, then receives
// the first once it is due and completes it: {"queue", "delayMs", "waitMs"}.
const { run, summary } = require("./common");

run(async (client, { queue, delayMs, waitMs }) => {
  const sender = client.createSender(queue);
  const due = new Date(Date.now() + delayMs);
  const scheduled = await sender.scheduleMessages(
    [
      { body: "later", messageId: "js-kept" },
      { body: "never", messageId: "js-cancelled" },
    ],
    due,
  );
  const sequenceNumbers = scheduled.map((number) => number.toNumber());
  await sender.cancelScheduledMessages(scheduled[1]);
  const receiver = client.createReceiver(queue, { receiveMode: "peekLock" });
  const peeked = (await receiver.peekMessages(5)).map(summary);
  const messages = await receiver.receiveMessages(5, { maxWaitTimeInMs: waitMs });
  const receivedAt = Date.now();
  for (const message of messages) {
    await receiver.completeMessage(message);
  }
  await Promise.all([sender.close(), receiver.close()]);
  return { due: due.getTime(), sequenceNumbers, peeked, received: messages.map(summary), receivedAt };
});
