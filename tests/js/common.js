"use strict";
// Shared by the scripts that drive the local broker through Microsoft's JavaScript SDK, as a CRM
// written in JavaScript would. Each script takes one JSON argument, reads the connection string from
// SERVICEBUS_CONNECTION, prints one JSON line with what it saw and exits 0, or prints the error and
// exits 1.
const { ServiceBusClient } = require("@azure/service-bus");

const OPERATION_TIMEOUT_MS = 10000;

function plainBody(body) {
  return Buffer.isBuffer(body) ? body.toString("utf8") : body;
}

function summary(message) {
  return {
    messageId: message.messageId,
    body: plainBody(message.body),
    subject: message.subject,
    contentType: message.contentType,
    correlationId: message.correlationId,
    applicationProperties: message.applicationProperties ?? {},
    deliveryCount: message.deliveryCount,
    sequenceNumber: message.sequenceNumber === undefined ? null : message.sequenceNumber.toNumber(),
    state: message.state,
    lockToken: message.lockToken ?? null,
    lockedUntilUtc: message.lockedUntilUtc ? message.lockedUntilUtc.getTime() : null,
    scheduledEnqueueTimeUtc: message.scheduledEnqueueTimeUtc
      ? new Date(message.scheduledEnqueueTimeUtc).getTime()
      : null,
    deadLetterReason: message.deadLetterReason ?? null,
    deadLetterErrorDescription: message.deadLetterErrorDescription ?? null,
    deadLetterSource: message.deadLetterSource ?? null,
  };
}

async function run(main) {
  const args = JSON.parse(process.argv[2] ?? "{}");
  const client = new ServiceBusClient(process.env.SERVICEBUS_CONNECTION, {
    retryOptions: { maxRetries: 0, timeoutInMs: OPERATION_TIMEOUT_MS },
  });
  try {
    const result = await main(client, args);
    process.stdout.write(JSON.stringify(result) + "\n");
  } catch (error) {
    process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
    process.exitCode = 1;
  } finally {
    await client.close();
  }
}

module.exports = { run, summary };
