// Shared by the Node client programs: bounded steps and the "ok NAME" / "FAIL NAME: error" / "done"
// lines that interop_tests/test_other_languages.py asserts on.
"use strict";

const TIMEOUT_MS = 10000;

function withTimeout(name, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function runAll(steps) {
  for (const [name, step] of steps) {
    try {
      await withTimeout(name, step());
    } catch (error) {
      console.log(`FAIL ${name}: ${error && error.stack ? error.stack : error}`);
      process.exit(1);
    }
    console.log(`ok ${name}`);
  }
  console.log("done");
  process.exit(0);
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

// A promise and its resolve function, for waiting on callbacks.
function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Poll until predicate() holds (the step's own timeout bounds the wait).
async function waitFor(predicate) {
  while (!predicate()) await sleep(10);
}

// Messages pushed by a consumer callback, taken in order by awaiting next().
function inbox() {
  const items = [];
  const waiters = [];
  return {
    push(item) {
      const waiter = waiters.shift();
      if (waiter) waiter(item); else items.push(item);
    },
    next() {
      return items.length ? Promise.resolve(items.shift()) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

// An idle connection with a 1 s heartbeat must still be alive this long after it opened: both
// Node clients drop a connection that reads nothing for 1-2 intervals, so surviving means the
// broker's heartbeats arrived.
const IDLE_MS = 4000;

// The x-consumer-timeout (ms) of the consumer-timeout scenarios, and RabbitMQ's channel.close text
// when a delivery on channel `number` stays unacked longer.
const CONSUMER_TIMEOUT_MS = 1000;
const timeoutText = (number) => `PRECONDITION_FAILED - delivery acknowledgement on channel ${number} timed out. `
  + `Timeout value used: ${CONSUMER_TIMEOUT_MS} ms. `
  + "This timeout value can be configured, see consumers doc guide to learn more";

// The "flagged" scenarios' settings (see interop_tests/other_languages.py's flagged_broker).
function flaggedEnv() {
  const { AMQPS_URL, AMQPS_CA, DISK_FILLER, DISK_FILLER_BYTES } = process.env;
  return { amqpsUrl: AMQPS_URL, ca: AMQPS_CA, filler: DISK_FILLER, fillerBytes: Number(DISK_FILLER_BYTES) };
}

module.exports = {
  runAll, expect, deferred, sleep, waitFor, inbox, flaggedEnv, IDLE_MS, TIMEOUT_MS, CONSUMER_TIMEOUT_MS, timeoutText,
};
