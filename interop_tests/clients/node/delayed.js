// Delayed messages with amqplib: node delayed.js AMQP_URL PREFIX.
// Declares an x-delayed-message exchange (x-delayed-type direct) and a bound queue, publishes with
// confirms messages whose x-delay is out of publish order, consumes them, and checks they arrive in
// delay order ("order") and none before its publish time plus its delay ("not-early"); prints one
// "lateness MS" line per message, then "done". interop_tests/test_delayed_other_languages.py runs it.
"use strict";

const amqplib = require("amqplib");
const { expect, deferred, TIMEOUT_MS } = require("./common");

const [url, prefix] = process.argv.slice(2);
const DELAYS = [900, 300, 600, 100];

function fail(name, error) {
  console.log(`FAIL ${name}: ${error && error.stack ? error.stack : error}`);
  process.exit(1);
}

async function main() {
  const timer = setTimeout(() => fail("all", new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  const conn = await amqplib.connect(url);
  const ch = await conn.createConfirmChannel();
  const exchange = `${prefix}-dx`;
  const queue = `${prefix}-q`;
  await ch.assertExchange(exchange, "x-delayed-message", { durable: false, arguments: { "x-delayed-type": "direct" } });
  await ch.assertQueue(queue, { exclusive: true, durable: false });
  await ch.bindQueue(queue, exchange, "k");
  console.log("ok declare");

  const due = new Map();
  const got = [];
  const lateness = [];
  const all = deferred();
  await ch.consume(queue, (msg) => {
    const body = msg.content.toString();
    got.push(body);
    lateness.push(performance.now() - due.get(body));
    if (got.length === DELAYS.length) all.resolve();
  }, { noAck: true });
  for (const delay of DELAYS) {
    const body = `delay ${delay}`;
    due.set(body, performance.now() + delay);
    ch.publish(exchange, "k", Buffer.from(body), { persistent: true, headers: { "x-delay": delay } });
    await ch.waitForConfirms();
  }
  console.log("ok publish");
  await all.promise;
  const want = [...DELAYS].sort((a, b) => a - b).map((delay) => `delay ${delay}`);
  expect(JSON.stringify(got) === JSON.stringify(want), `got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  console.log("ok order");
  lateness.forEach((late, i) => expect(late >= 0, `${got[i]} arrived ${-late} ms early`));
  console.log("ok not-early");
  for (const late of lateness) console.log(`lateness ${late.toFixed(1)}`);
  await ch.deleteExchange(exchange);
  await conn.close();
  clearTimeout(timer);
  console.log("done");
}

main().catch((error) => fail("delayed", error));
