// A stream queue through amqplib: node streams.js AMQP_URL PREFIX.
// Declares a stream (x-queue-type: stream), publishes ten messages with confirms, then consumes with
// prefetch and manual acks from "first" and from offset 5, checking each delivery's x-stream-offset
// header; prints "ok NAME" per step and "done" (interop_tests/test_streams_other_languages.py).
"use strict";

const amqplib = require("amqplib");
const { runAll, expect, deferred } = require("./common");

const [url, prefix] = process.argv.slice(2);
const stream = `${prefix}-stream`;
const COUNT = 10;
let conn;

// Consume from `offset` and check that messages first..COUNT-1 arrive, each with its offset header.
async function consumeFrom(offset, first) {
  const ch = await conn.createChannel();
  await ch.prefetch(3); // a stream consumer needs a prefetch count
  const got = [];
  const all = deferred();
  await ch.consume(stream, (msg) => {
    got.push([msg.content.toString(), msg.properties.headers["x-stream-offset"]]);
    ch.ack(msg); // gives the prefetch credit back; nothing is removed from the stream
    if (got.length === COUNT - first) all.resolve();
  }, { noAck: false, arguments: { "x-stream-offset": offset } });
  await all.promise;
  const want = [];
  for (let i = first; i < COUNT; i++) want.push([`m${i}`, i]);
  expect(JSON.stringify(got) === JSON.stringify(want), `got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  await ch.close();
}

runAll([
  ["connect", async () => {
    conn = await amqplib.connect(url);
  }],
  ["declare-publish", async () => {
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue(stream, { durable: true, arguments: { "x-queue-type": "stream" } });
    for (let i = 0; i < COUNT; i++) ch.sendToQueue(stream, Buffer.from(`m${i}`));
    await ch.waitForConfirms();
    await ch.close();
  }],
  ["consume-first", () => consumeFrom("first", 0)],
  ["consume-offset", () => consumeFrom(5, 5)],
  ["delete", async () => {
    const ch = await conn.createChannel();
    await ch.deleteQueue(stream);
    await ch.close();
  }],
  ["close", async () => {
    await conn.close();
  }],
]);
