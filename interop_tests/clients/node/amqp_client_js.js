// CloudAMQP's @cloudamqp/amqp-client against the broker: node amqp_client_js.js AMQP_URL PREFIX.
// This client reads reserved fields by their exact RabbitMQ size (channel.open-ok's channel-id
// must be an empty longstr), so merely opening channels checks those bytes.
"use strict";

const { AMQPClient } = require("@cloudamqp/amqp-client");
const { runAll, expect, deferred } = require("./common");

const [url, prefix] = process.argv.slice(2);
let conn;

runAll([
  ["connect", async () => { conn = await new AMQPClient(url).connect(); }],
  ["publish-consume", async () => {
    const ch = await conn.channel();
    const q = await ch.queue(`${prefix}-pc`, { autoDelete: true });
    const got = [];
    const all = deferred();
    await q.subscribe({ noAck: false }, async (msg) => {
      got.push([msg.bodyToString(), msg.properties.contentType, msg.properties.headers.n]);
      await msg.ack();
      if (got.length === 3) all.resolve();
    });
    for (let i = 0; i < 3; i++) {
      await q.publish(`message ${i}`, { contentType: "text/plain", headers: { n: i } });
    }
    await all.promise;
    expect(JSON.stringify(got) === JSON.stringify([0, 1, 2].map((i) => [`message ${i}`, "text/plain", i])),
      `got ${JSON.stringify(got)}`);
    await ch.close();
  }],
  ["get", async () => {
    const ch = await conn.channel();
    const q = await ch.queue(`${prefix}-get`, { autoDelete: true });
    expect((await q.get({ noAck: true })) === null, "get on an empty queue returned a message");
    await ch.confirmSelect();
    await q.publish("got");
    const msg = await q.get({ noAck: true });
    expect(msg && msg.bodyToString() === "got", `got ${msg && msg.bodyToString()}`);
    await q.delete();
    await ch.close();
  }],
  ["confirms", async () => {
    const ch = await conn.channel();
    await ch.confirmSelect();
    const name = `${prefix}-confirms`;
    await ch.queueDeclare(name, { autoDelete: true });
    const tags = await Promise.all(Array.from({ length: 50 }, () => ch.basicPublish("", name, "c")));
    expect(JSON.stringify(tags) === JSON.stringify(Array.from({ length: 50 }, (_, i) => i + 1)),
      `confirmed tags ${tags}`);
    const { messageCount } = await ch.queueDeclare(name, { passive: true });
    expect(messageCount === 50, `${messageCount} messages in the queue`);
    await ch.queueDelete(name);
    await ch.close();
  }],
  ["crossing-close", async () => {
    // A publish to a missing exchange, then close at once: our close crosses the broker's 404 close.
    // This client never settles the promise of a close that crossed the server's (on RabbitMQ too),
    // so a round trip on another channel is what says both closes have been answered.
    const control = await conn.channel();
    for (let i = 0; i < 20; i++) {
      const ch = await conn.channel();
      ch.basicPublish(`${prefix}-missing-exchange`, "k", "x").catch(() => {});
      ch.close().catch(() => {});
      await control.queueDeclare(`${prefix}-cross`, { autoDelete: true });
    }
    expect(!conn.closed, "the connection was closed");
    const ch = await conn.channel();
    await ch.queueDeclare(`${prefix}-cross`, { passive: true });
    await ch.close();
    await control.close();
  }],
  ["close", async () => { await conn.close(); }],
]);
