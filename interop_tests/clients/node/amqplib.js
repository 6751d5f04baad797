// amqplib (amqp-node) against the broker: node amqplib.js AMQP_URL PREFIX.
"use strict";

const amqplib = require("amqplib");
const { runAll, expect, deferred } = require("./common");

const [url, prefix] = process.argv.slice(2);
let conn;
let connectionError = null;

runAll([
  ["connect", async () => {
    conn = await amqplib.connect(url);
    conn.on("error", (error) => { connectionError = error; });
  }],
  ["publish-consume", async () => {
    const ch = await conn.createChannel();
    const name = `${prefix}-pc`;
    await ch.assertQueue(name, { autoDelete: true, durable: false });
    const got = [];
    const all = deferred();
    await ch.consume(name, (msg) => {
      got.push([msg.content.toString(), msg.properties.contentType, msg.properties.headers.n]);
      ch.ack(msg);
      if (got.length === 3) all.resolve();
    });
    for (let i = 0; i < 3; i++) {
      ch.sendToQueue(name, Buffer.from(`message ${i}`), { contentType: "text/plain", headers: { n: i } });
    }
    await all.promise;
    expect(JSON.stringify(got) === JSON.stringify([0, 1, 2].map((i) => [`message ${i}`, "text/plain", i])),
      `got ${JSON.stringify(got)}`);
    await ch.close();
  }],
  ["get", async () => {
    const ch = await conn.createConfirmChannel();
    const name = `${prefix}-get`;
    await ch.assertQueue(name, { autoDelete: true, durable: false });
    expect((await ch.get(name, { noAck: true })) === false, "get on an empty queue returned a message");
    ch.sendToQueue(name, Buffer.from("got"));
    await ch.waitForConfirms();
    const msg = await ch.get(name, { noAck: true });
    expect(msg && msg.content.toString() === "got", `got ${msg && msg.content}`);
    await ch.deleteQueue(name);
    await ch.close();
  }],
  ["confirms", async () => {
    const ch = await conn.createConfirmChannel();
    const name = `${prefix}-confirms`;
    await ch.assertQueue(name, { autoDelete: true, durable: false });
    const confirmed = Array.from({ length: 50 }, () => new Promise((resolve, reject) => {
      ch.sendToQueue(name, Buffer.from("c"), {}, (error) => (error ? reject(error) : resolve()));
    }));
    await Promise.all(confirmed);
    const { messageCount } = await ch.checkQueue(name);
    expect(messageCount === 50, `${messageCount} messages in the queue`);
    await ch.deleteQueue(name);
    await ch.close();
  }],
  ["crossing-close", async () => {
    // A publish to a missing exchange, then close at once: our close crosses the broker's 404 close.
    // A round trip on another channel lets both closes be answered before the next channel opens.
    const control = await conn.createChannel();
    for (let i = 0; i < 20; i++) {
      const ch = await conn.createChannel();
      ch.on("error", () => {});  // the broker's 404 channel close
      ch.publish(`${prefix}-missing-exchange`, "k", Buffer.from("x"));
      await ch.close().catch(() => {});
      await control.assertQueue(`${prefix}-cross`, { autoDelete: true, durable: false });
    }
    expect(connectionError === null, `the connection failed: ${connectionError}`);
    const ch = await conn.createChannel();
    await ch.checkQueue(`${prefix}-cross`);
    await ch.close();
    await control.close();
  }],
  ["close", async () => { await conn.close(); }],
]);
