// Service Bus: the CRM's onboarding queue and the nightly re-verification queue.
// Standard tier: Basic has no duplicate detection, which the product relies on (palctl and the
// nightly run derive MessageIds so that sending the same thing twice delivers it once). Standard has
// a monthly base charge even when idle (docs/deploy.md). Local (SAS key) auth is disabled: senders
// and receivers sign in with Entra ID (Data Sender / Data Receiver roles, rbac.bicep).
//
// Lock duration, max delivery count and duplicate-detection window match the local broker
// (sandbox/broker/queues.json); tests/test_config_contract.py checks they stay equal.
// `requiresDuplicateDetection` cannot be changed on an existing queue (the window can).
param name string
param location string
param tags object
param onboardingQueueName string
param verifyQueueName string
param auditQueueName string
param deliveryQueueName string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

// customer-onboarded: one message per customer from the CRM or `palctl enqueue`.
resource onboardingQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: onboardingQueueName
  properties: {
    // One attempt takes seconds and the host renews the lock while the function runs
    // (host.json maxAutoLockRenewalDuration), so this only sets how soon a message held by an
    // instance that died is delivered again.
    lockDuration: 'PT1M'
    // Transient failures do not use deliveries: the function schedules a copy with backoff and
    // completes. A delivery is used up only when the function raises (it could not schedule its
    // retry: Service Bus unreachable) or the instance dies mid-message. Ten in a row means poison
    // or an outage: the message is dead-lettered for `palctl dlq list` / `palctl dlq replay`.
    maxDeliveryCount: 10
    // One day covers a message's whole retry horizon (MAX_ATTEMPTS=8, backoff doubling from 30 s,
    // at most 1 h each: about an hour in all) and a CSV backfill sent twice on the same day. Retry copies carry
    // derived MessageIds ({id}:retry{n}) so they are never dropped as duplicates.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P1D'
    // An onboarding nobody processed for two weeks (app stopped) is kept in the dead-letter queue
    // rather than dropped.
    defaultMessageTimeToLive: 'P14D'
    deadLetteringOnMessageExpiration: true
    maxSizeInMegabytes: 1024
    requiresSession: false
    enableBatchedOperations: true
  }
}

// link-verify: one message per link per night from the re-verification timer.
resource verifyQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: verifyQueueName
  properties: {
    // Same reasoning as the onboarding queue.
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    // At least one day: a nightly run is de-duplicated on (link, date), so a second run on the
    // same day (a restarted timer, a manual run) verifies nothing twice.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P1D'
    // A verification not done within a day is superseded by the next night's: drop it rather
    // than dead-letter it.
    defaultMessageTimeToLive: 'P1D'
    deadLetteringOnMessageExpiration: false
    maxSizeInMegabytes: 1024
    requiresSession: false
    enableBatchedOperations: true
  }
}

// attribution-audit: one message per customer from the weekly audit (or an operator), then one per
// Power Platform environment.
resource auditQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: auditQueueName
  properties: {
    // Same reasoning as the onboarding queue: retries are scheduled copies, not deliveries.
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    // A week's audit is de-duplicated on (customer, run) and (environment, run).
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P1D'
    // An audit not done within two days is superseded by an operator's or the next week's.
    defaultMessageTimeToLive: 'P2D'
    deadLetteringOnMessageExpiration: false
    maxSizeInMegabytes: 1024
    requiresSession: false
    enableBatchedOperations: true
  }
}

// solution-delivery: one message per delivery step (an import, or a follow-up poll of one). A step may
// poll an import for two minutes, so its lock lasts five.
resource deliveryQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: deliveryQueueName
  properties: {
    lockDuration: 'PT5M'
    maxDeliveryCount: 10
    // The API derives each step's MessageId from the delivery: a step sent twice is delivered once.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P1D'
    defaultMessageTimeToLive: 'P2D'
    deadLetteringOnMessageExpiration: false
    maxSizeInMegabytes: 1024
    requiresSession: false
    enableBatchedOperations: true
  }
}

output name string = namespace.name
output id string = namespace.id
// serviceBusEndpoint is https://NAME.servicebus.windows.net:443/; settings want the host name.
output hostName string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
output onboardingQueueName string = onboardingQueue.name
output verifyQueueName string = verifyQueue.name
output auditQueueName string = auditQueue.name
output deliveryQueueName string = deliveryQueue.name
