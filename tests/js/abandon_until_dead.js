"use strict";
// Receives one message and abandons it, again and again, until it shows up in the dead-letter queue
// (checked after every abandon) or "maxAbandons" is reached; then receives it from the dead-letter
// queue and completes it: {"queue", "maxAbandons", "waitMs"}.
const { run, summary } = require("./common");

async function receiveOne(receiver, waitMs) {
  const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: waitMs });
  return message;
}

run(async (client, { queue, maxAbandons, waitMs }) => {
  const receiver = client.createReceiver(queue, { receiveMode: "peekLock" });
  const deadLetters = client.createReceiver(queue, { receiveMode: "peekLock", subQueueType: "deadLetter" });
  const deliveries = [];
  let deadLettered = [];
  while (deliveries.length < maxAbandons && deadLettered.length === 0) {
    const message = await receiveOne(receiver, waitMs);
    if (message === undefined) {
      throw new Error(`the message was neither redelivered nor dead-lettered after ${deliveries.length} abandons`);
    }
    deliveries.push(message.deliveryCount);
    await receiver.abandonMessage(message);
    deadLettered = await deadLetters.peekMessages(1);
  }
  const remaining = (await receiver.peekMessages(10)).map(summary);
  const dead = await receiveOne(deadLetters, waitMs);
  if (dead !== undefined) {
    await deadLetters.completeMessage(dead);
  }
  await Promise.all([receiver.close(), deadLetters.close()]);
  return { deliveries, remaining, deadLetter: dead === undefined ? null : summary(dead) };
});
