"use strict";
// Sends messages to a queue: {"queue", "mode": "single" | "batch" | "array", "messages": [...]}.
// "single" sends them one by one, "batch" through createMessageBatch, "array" as one sendMessages call.
const { run } = require("./common");

async function send(sender, mode, messages) {
  if (mode === "single") {
    for (const message of messages) {
      await sender.sendMessages(message);
    }
  } else if (mode === "array") {
    await sender.sendMessages(messages);
  } else if (mode === "batch") {
    const batch = await sender.createMessageBatch();
    for (const message of messages) {
      if (!batch.tryAddMessage(message)) {
        throw new Error(`message ${message.messageId} does not fit in the batch`);
      }
    }
    await sender.sendMessages(batch);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
}

run(async (client, { queue, mode, messages }) => {
  const sender = client.createSender(queue);
  await send(sender, mode, messages);
  await sender.close();
  return { sent: messages.length };
});
