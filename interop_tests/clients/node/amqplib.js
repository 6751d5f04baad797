// amqplib (amqp-node) against the broker: node amqplib.js AMQP_URL PREFIX [flagged].
// amqplib has no API for the tx class, so this program has no "transactions" scenario.
"use strict";

const fs = require("fs");
const amqplib = require("amqplib");
const {
  runAll, expect, deferred, sleep, waitFor, inbox, flaggedEnv, IDLE_MS, CONSUMER_TIMEOUT_MS, timeoutText,
} = require("./common");

const [url, prefix, mode] = process.argv.slice(2);
const transient = { autoDelete: true, durable: false };
const REPLY_TO = "amq.rabbitmq.reply-to";
let conn;
let connectionError = null;
let idle;
let timeouts;

// Consumer timeouts: one delivery left unacked on each of two channels, from a queue with
// x-consumer-timeout and through a basic.consume with it; started at connect, checked near the end.
async function holdDelivery(name, queueArguments, consumeArguments) {
  const ch = await conn.createChannel();
  const closed = deferred();
  ch.on("error", (error) => closed.resolve(error));
  // exclusive, not auto-delete: the timeout's channel.close cancels the consumer, the queue stays
  await ch.assertQueue(name, { exclusive: true, durable: false, arguments: queueArguments });
  ch.sendToQueue(name, Buffer.from("held"));
  const delivered = deferred();
  await ch.consume(name, (msg) => delivered.resolve(msg), { arguments: consumeArguments });
  await delivered.promise;
  return { name, number: ch.ch, closed: closed.promise };
}

async function startConsumerTimeouts() {
  const limit = { "x-consumer-timeout": CONSUMER_TIMEOUT_MS };
  return [await holdDelivery(`${prefix}-timeout-1`, limit, {}), await holdDelivery(`${prefix}-timeout-2`, {}, limit)];
}

async function publishConsume(connection, name) {
  const ch = await connection.createChannel();
  await ch.assertQueue(name, transient);
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
}

async function expectCount(ch, name, want, when) {
  const { messageCount } = await ch.checkQueue(name);
  expect(messageCount === want, `${when}: ${messageCount} messages in ${name}, want ${want}`);
}

const returned = (ch) => new Promise((resolve) => ch.once("return", resolve));

const basics = [
  ["connect", async () => {
    conn = await amqplib.connect(url);
    conn.on("error", (error) => { connectionError = error; });
    const connection = await amqplib.connect(`${url}?heartbeat=1`);
    idle = { connection, opened: Date.now(), error: null };
    connection.on("error", (error) => { idle.error = error; });
    timeouts = await startConsumerTimeouts();
  }],
  ["publish-consume", () => publishConsume(conn, `${prefix}-pc`)],
  ["get", async () => {
    const ch = await conn.createConfirmChannel();
    const name = `${prefix}-get`;
    await ch.assertQueue(name, transient);
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
    await ch.assertQueue(name, transient);
    const confirmed = Array.from({ length: 50 }, () => new Promise((resolve, reject) => {
      ch.sendToQueue(name, Buffer.from("c"), {}, (error) => (error ? reject(error) : resolve()));
    }));
    await Promise.all(confirmed);
    await expectCount(ch, name, 50, "after 50 confirms");
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
      await control.assertQueue(`${prefix}-cross`, transient);
    }
    expect(connectionError === null, `the connection failed: ${connectionError}`);
    const ch = await conn.createChannel();
    await ch.checkQueue(`${prefix}-cross`);
    await ch.close();
    await control.close();
  }],
];

const features = [
  ["return", async () => {
    const ch = await conn.createChannel();
    const key = `${prefix}-nowhere`;
    const back = returned(ch);
    ch.publish("amq.direct", key, Buffer.from("back"), { mandatory: true });
    const { fields, content } = await back;
    expect(fields.replyCode === 312 && fields.replyText === "NO_ROUTE" && fields.exchange === "amq.direct"
      && fields.routingKey === key && content.toString() === "back", `returned ${JSON.stringify(fields)} ${content}`);
    await ch.close();
  }],
  ["consumer-cancel", async () => {
    // amqplib announces consumer_cancel_notify and calls the consumer with null on basic.cancel
    const ch = await conn.createChannel();
    const name = `${prefix}-cancel`;
    await ch.assertQueue(name, { durable: false });
    const cancelled = deferred();
    await ch.consume(name, (msg) => { if (msg === null) cancelled.resolve(); });
    const other = await conn.createChannel();
    await other.deleteQueue(name);
    await cancelled.promise;
    await ch.assertQueue(`${name}-after`, transient);
    await other.close();
    await ch.close();
  }],
  ["qos", async () => {
    const ch = await conn.createChannel();
    const name = `${prefix}-qos`;
    await ch.assertQueue(name, transient);
    await ch.prefetch(2);
    for (let i = 0; i < 5; i++) ch.sendToQueue(name, Buffer.from(String(i)));
    const got = [];
    await ch.consume(name, (msg) => got.push(msg));
    await waitFor(() => got.length === 2);
    await expectCount(ch, name, 3, "with 2 unacked under prefetch 2");
    for (let i = 2; i < 5; i++) {
      ch.ack(got[i - 2]);
      await waitFor(() => got.length === i + 1);
    }
    expect(got.map((m) => m.content.toString()).join() === "0,1,2,3,4", "out of order");
    ch.ackAll();
    await ch.close();
  }],
  ["nack-requeue", async () => {
    const ch = await conn.createChannel();
    const name = `${prefix}-nack`;
    await ch.assertQueue(name, transient);
    const messages = inbox();
    await ch.consume(name, (msg) => messages.push(msg));
    ch.sendToQueue(name, Buffer.from("again"));
    const first = await messages.next();
    expect(!first.fields.redelivered, "the first delivery is marked redelivered");
    ch.nack(first, false, true);
    const second = await messages.next();
    expect(second.fields.redelivered && second.content.toString() === "again", "no redelivered flag");
    ch.ack(second);
    await ch.close();
  }],
  ["dead-letter", async () => {
    const ch = await conn.createChannel();
    const name = `${prefix}-dl`;
    const dlq = `${name}-dead`;
    await ch.assertQueue(dlq, transient);
    await ch.assertQueue(name, { ...transient, deadLetterExchange: "", deadLetterRoutingKey: dlq });
    const messages = inbox();
    await ch.consume(name, (msg) => messages.push(msg));
    ch.sendToQueue(name, Buffer.from("dead"));
    ch.reject(await messages.next(), false);
    const dead = inbox();
    await ch.consume(dlq, (msg) => dead.push(msg), { noAck: true });
    const msg = await dead.next();
    const deaths = msg.properties.headers["x-death"];
    expect(msg.content.toString() === "dead" && deaths.length === 1 && deaths[0].reason === "rejected"
      && deaths[0].queue === name && deaths[0].count === 1, `x-death ${JSON.stringify(deaths)}`);
    await ch.close();
  }],
  ["exchange-binding", async () => {
    const ch = await conn.createChannel();
    const name = `${prefix}-e2e`;
    const [source, destination] = [`${name}-source`, `${name}-destination`];
    await ch.assertExchange(source, "topic", { durable: false });
    await ch.assertExchange(destination, "fanout", { durable: false });
    await ch.bindExchange(destination, source, "a.*");
    await ch.assertQueue(name, transient);
    await ch.bindQueue(name, destination, "");
    const back = returned(ch);
    ch.publish(source, "a.b", Buffer.from("matched"), { mandatory: true });
    ch.publish(source, "b.a", Buffer.from("unmatched"), { mandatory: true });
    expect((await back).content.toString() === "unmatched", "the wrong message came back");
    const msg = await ch.get(name, { noAck: true });
    expect(msg && msg.content.toString() === "matched" && msg.fields.exchange === source
      && msg.fields.routingKey === "a.b", `got ${msg && JSON.stringify(msg.fields)}`);
    await expectCount(ch, name, 0, "after the matched message");
    await ch.deleteExchange(source);
    await ch.deleteExchange(destination);
    await ch.close();
  }],
  ["headers-exchange", async () => {
    const ch = await conn.createConfirmChannel();
    const name = `${prefix}-headers`;
    await ch.assertExchange(name, "headers", { durable: false });
    const bindings = {
      [`${name}-all`]: { "x-match": "all", format: "pdf", size: 2 },
      [`${name}-any`]: { "x-match": "any", format: "pdf", type: "report" },
    };
    for (const [queue, args] of Object.entries(bindings)) {
      await ch.assertQueue(queue, transient);
      await ch.bindQueue(queue, name, "", args);
    }
    const back = returned(ch);
    for (const headers of [{ format: "pdf", size: 2 }, { format: "pdf", size: 3 }, { type: "letter" }]) {
      ch.publish(name, "", Buffer.from("h"), { headers, mandatory: true });
    }
    expect((await back).properties.headers.type === "letter", "the wrong message came back");
    await ch.waitForConfirms();
    await expectCount(ch, `${name}-all`, 1, "x-match all");
    await expectCount(ch, `${name}-any`, 2, "x-match any");
    await ch.deleteExchange(name);
    await ch.close();
  }],
  ["large-message", async () => {
    const ch = await conn.createChannel();
    const name = `${prefix}-large`;
    await ch.assertQueue(name, transient);
    const body = Buffer.alloc((1 << 20) + 7, 0).map((_, i) => (i * 7) & 0xff);
    ch.sendToQueue(name, body);
    const messages = inbox();
    await ch.consume(name, (msg) => messages.push(msg), { noAck: true });
    const msg = await messages.next();
    expect(body.equals(msg.content), `got ${msg.content.length} bytes, want ${body.length}`);
    await ch.close();
  }],
  ["channel-errors", async () => {
    // the broker's channel.close codes and texts, as RabbitMQ words them; each closes only its channel
    const name = `${prefix}-errors`;
    const expectClose = async (what, code, text, call) => {
      const ch = await conn.createChannel();
      const closed = deferred();
      ch.on("error", (error) => closed.resolve(error));
      await call(ch).catch(() => {});  // the 'error' event carries the close either way
      const error = await closed.promise;
      expect(error.code === code && error.message.includes(`with message "${text}"`),
        `${what}: got ${error.message}, want ${code} ${text}`);
    };
    await expectClose("passive declare", 404, `NOT_FOUND - no queue '${name}' in vhost '/'`,
      (ch) => ch.checkQueue(name));
    const ch = await conn.createChannel();
    await ch.assertQueue(name, transient);
    await expectClose("inequivalent declare", 406, `PRECONDITION_FAILED - inequivalent arg 'durable' for queue `
      + `'${name}' in vhost '/': received 'true' but current is 'false'`,
    (other) => other.assertQueue(name, { autoDelete: true, durable: true }));
    await expectClose("publish to a missing exchange", 404, `NOT_FOUND - no exchange '${name}-missing' in vhost '/'`,
      async (other) => { other.publish(`${name}-missing`, "k", Buffer.from("x")); });
    await ch.checkQueue(name);
    expect(connectionError === null, `the connection failed: ${connectionError}`);
    await ch.close();
  }],
  ["direct-reply-to", async () => {
    const server = await conn.createChannel();
    const name = `${prefix}-rpc`;
    await server.assertQueue(name, transient);
    const requests = inbox();
    await server.consume(name, (msg) => requests.push(msg), { noAck: true });
    const client = await conn.createChannel();
    const replies = inbox();
    await client.consume(REPLY_TO, (msg) => replies.push(msg), { noAck: true });
    client.sendToQueue(name, Buffer.from("ping"), { replyTo: REPLY_TO, correlationId: "call-1" });
    const request = await requests.next();
    const { replyTo, correlationId } = request.properties;
    expect(replyTo.startsWith(`${REPLY_TO}.`), `the request's reply_to is ${replyTo}`);
    server.sendToQueue(replyTo, Buffer.from("pong"), { correlationId });
    const reply = await replies.next();
    expect(reply.content.toString() === "pong" && reply.properties.correlationId === "call-1",
      `reply ${reply.content} correlation ${reply.properties.correlationId}`);
    await client.close();
    await server.close();
  }],
  ["ttl-expired", async () => {
    // expiration "0" and no consumer: dead-lettered at once, the expiration kept in x-death
    const ch = await conn.createChannel();
    const name = `${prefix}-ttl`;
    const dlq = `${name}-dead`;
    await ch.assertQueue(dlq, transient);
    await ch.assertQueue(name, { ...transient, deadLetterExchange: "", deadLetterRoutingKey: dlq });
    ch.sendToQueue(name, Buffer.from("late"), { expiration: "0" });
    const dead = inbox();
    await ch.consume(dlq, (msg) => dead.push(msg), { noAck: true });
    const msg = await dead.next();
    const [death, ...more] = msg.properties.headers["x-death"];
    expect(more.length === 0 && msg.properties.expiration === undefined && death.reason === "expired"
      && death.queue === name && death["original-expiration"] === "0",
    `expiration ${msg.properties.expiration}, x-death ${JSON.stringify(msg.properties.headers["x-death"])}`);
    await ch.close();
  }],
  ["reject-publish", async () => {
    const ch = await conn.createConfirmChannel();
    const name = `${prefix}-full`;
    await ch.assertQueue(name, { ...transient, maxLength: 1, arguments: { "x-overflow": "reject-publish" } });
    const outcomes = ["kept", "refused"].map((body) => new Promise((resolve) => {
      ch.sendToQueue(name, Buffer.from(body), {}, (error) => resolve(error ? "nack" : "ack"));
    }));
    const got = await Promise.all(outcomes);
    expect(got.join() === "ack,nack", `confirms ${got}, want ack,nack`);
    await expectCount(ch, name, 1, "after the refused publish");
    await ch.close();
  }],
  ["priority", async () => {
    const ch = await conn.createConfirmChannel();
    const name = `${prefix}-priority`;
    await ch.assertQueue(name, { ...transient, maxPriority: 5 });
    for (const priority of [1, 5, 3]) ch.sendToQueue(name, Buffer.from(String(priority)), { priority });
    await ch.waitForConfirms();
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await ch.get(name, { noAck: true })).content.toString());
    expect(got.join() === "5,3,1", `got priorities ${got}, want 5,3,1`);
    await ch.close();
  }],
  ["alternate-exchange", async () => {
    // no basic.return for what the alternate exchange takes: the confirm comes after any return would
    const ch = await conn.createConfirmChannel();
    const name = `${prefix}-ae`;
    const alternate = `${name}-alternate`;
    let returnedMessage = null;
    ch.on("return", (msg) => { returnedMessage = msg; });
    await ch.assertExchange(alternate, "fanout", { durable: false });
    await ch.assertExchange(name, "direct", { durable: false, alternateExchange: alternate });
    await ch.assertQueue(name, transient);
    await ch.bindQueue(name, alternate, "");
    ch.publish(name, "unbound", Buffer.from("caught"), { mandatory: true });
    await ch.waitForConfirms();
    expect(returnedMessage === null, "the message was returned");
    const msg = await ch.get(name, { noAck: true });
    expect(msg && msg.content.toString() === "caught", `got ${msg && msg.content}`);
    await ch.deleteExchange(name);
    await ch.deleteExchange(alternate);
    await ch.close();
  }],
  ["heartbeat", async () => {
    expect(idle.connection.connection.heartbeat === 1, `negotiated ${idle.connection.connection.heartbeat}`);
    await sleep(idle.opened + IDLE_MS - Date.now());
    expect(idle.error === null, `the idle connection failed: ${idle.error}`);
    const ch = await idle.connection.createChannel();
    await ch.assertQueue(`${prefix}-hb`, transient);
    await idle.connection.close();
  }],
  ["update-secret", async () => {
    // update-secret-ok for a right and a wrong secret alike (RabbitMQ's internal users); a channel
    // opened before the update and one opened after both work on
    const before = await conn.createChannel();
    const name = `${prefix}-secret`;
    await before.assertQueue(name, transient);
    await conn.updateSecret(Buffer.from("guest"), "token refresh");
    await conn.updateSecret(Buffer.from("a refreshed token"), "token refresh");
    before.sendToQueue(name, Buffer.from("after update-secret"));
    const after = await conn.createChannel();
    const messages = inbox();
    await after.consume(name, (msg) => messages.push(msg), { noAck: true });
    const msg = await messages.next();
    expect(msg.content.toString() === "after update-secret", `got ${msg.content}`);
    await after.close();
    await before.close();
  }],
  ["consumer-timeout", async () => {
    const other = await conn.createChannel();
    for (const { name, number, closed } of timeouts) {
      const error = await closed;
      expect(error.code === 406 && error.message.includes(`with message "${timeoutText(number)}"`),
        `channel ${number}: got ${error.message}, want 406 ${timeoutText(number)}`);
      const messages = inbox();
      await other.consume(name, (msg) => messages.push(msg));
      const msg = await messages.next();
      expect(msg.content.toString() === "held" && msg.fields.redelivered,
        `got ${msg.content} redelivered=${msg.fields.redelivered}`);
      other.ack(msg);
    }
    await other.close();
  }],
  ["close", async () => { await conn.close(); }],
];

const flagged = [
  ["tls", async () => {
    const { amqpsUrl, ca } = flaggedEnv();
    const refused = await amqplib.connect(amqpsUrl).then((c) => c.close().then(() => null), (error) => error);
    expect(refused && /certificate/.test(refused.message), `without the test CA: ${refused}`);
    const connection = await amqplib.connect(amqpsUrl, { ca: [fs.readFileSync(ca)] });
    expect(connection.connection.stream.encrypted, "not a TLS socket");
    await publishConsume(connection, `${prefix}-tls`);
    await connection.close();
  }],
  ["blocked", async () => {
    const { filler, fillerBytes } = flaggedEnv();
    const connection = await amqplib.connect(url);
    const events = [];
    connection.on("blocked", (reason) => events.push(reason));
    connection.on("unblocked", () => events.push("unblocked"));
    const ch = await connection.createConfirmChannel();
    const name = `${prefix}-blocked`;
    await ch.assertQueue(name, transient);
    fs.writeFileSync(filler, Buffer.alloc(fillerBytes));
    try {
      const confirmed = [];
      while (events.length === 0) {  // the broker measures free space every 0.1 s
        confirmed.push(new Promise((resolve, reject) => {
          ch.sendToQueue(name, Buffer.from("held"), {}, (error) => (error ? reject(error) : resolve()));
        }));
        await sleep(100);
      }
      expect(events[0] === "low on disk", `blocked: ${events}`);
      fs.unlinkSync(filler);
      await waitFor(() => events.length === 2);
      expect(events[1] === "unblocked", `events ${events}`);
      await Promise.all(confirmed);
      await expectCount(ch, name, confirmed.length, "after unblocking");
    } finally {
      fs.rmSync(filler, { force: true });
    }
    await connection.close();
  }],
];

runAll(mode === "flagged" ? flagged : [...basics, ...features]);
