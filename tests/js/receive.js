"use strict";
// Receives in peek-lock mode and settles each message:
// {"queue", "subQueue"?: "deadLetter", "count", "waitMs", "settle": ["complete" | "abandon" |
//  "deadLetter" | "defer", ...], "reason"?, "description"?}; settle[i] applies to the i-th message.
const { run, summary } = require("./common");

async function settle(receiver, message, how, reason, description) {
  if (how === "complete") {
    await receiver.completeMessage(message);
  } else if (how === "abandon") {
    await receiver.abandonMessage(message);
  } else if (how === "defer") {
    await receiver.deferMessage(message);
  } else if (how === "deadLetter") {
    await receiver.deadLetterMessage(message, { deadLetterReason: reason, deadLetterErrorDescription: description });
  } else {
    throw new Error(`unknown settlement ${how}`);
  }
}

run(async (client, { queue, subQueue, count, waitMs, settle: settlements, reason, description }) => {
  const receiver = client.createReceiver(queue, { receiveMode: "peekLock", subQueueType: subQueue });
  const messages = await receiver.receiveMessages(count, { maxWaitTimeInMs: waitMs });
  const received = messages.map(summary);
  for (const [index, message] of messages.entries()) {
    await settle(receiver, message, settlements[index], reason, description);
  }
  await receiver.close();
  return received;
});
