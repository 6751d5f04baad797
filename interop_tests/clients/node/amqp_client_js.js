// CloudAMQP's @cloudamqp/amqp-client against the broker: node amqp_client_js.js AMQP_URL PREFIX [flagged].
// This client reads reserved fields by their exact RabbitMQ size (channel.open-ok's channel-id
// must be an empty longstr), so merely opening channels checks those bytes. It has no event for
// connection.blocked: it keeps the reason in `connection.blocked` and refuses to publish meanwhile.
"use strict";

const fs = require("fs");
const { AMQPClient } = require("@cloudamqp/amqp-client");
const {
  runAll, expect, deferred, sleep, waitFor, inbox, flaggedEnv, IDLE_MS, CONSUMER_TIMEOUT_MS, timeoutText,
} = require("./common");

const [url, prefix, mode] = process.argv.slice(2);
const REPLY_TO = "amq.rabbitmq.reply-to";
let conn;
let idle;
let timeouts;

// Consumer timeouts: one delivery left unacked on each of two channels, from a queue with
// x-consumer-timeout and through a basic.consume with it; started at connect, checked near the end.
async function holdDelivery(name, queueArguments, consumeArguments) {
  const ch = await conn.channel();
  const closed = deferred();
  ch.onerror = (reason) => closed.resolve(reason);  // "channel N closed: TEXT (CODE)"
  // exclusive, not auto-delete: the timeout's channel.close cancels the consumer, the queue stays
  await ch.queueDeclare(name, { exclusive: true, durable: false }, queueArguments);
  await ch.basicPublish("", name, "held");
  const delivered = deferred();
  await ch.basicConsume(name, { noAck: false, args: consumeArguments }, (msg) => delivered.resolve(msg));
  await delivered.promise;
  return { name, number: ch.id, closed: closed.promise };
}

async function startConsumerTimeouts() {
  const limit = { "x-consumer-timeout": CONSUMER_TIMEOUT_MS };
  return [await holdDelivery(`${prefix}-timeout-1`, limit, {}), await holdDelivery(`${prefix}-timeout-2`, {}, limit)];
}

async function publishConsume(connection, name) {
  const ch = await connection.channel();
  const q = await ch.queue(name, { autoDelete: true });
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
}

async function expectCount(ch, name, want, when) {
  const { messageCount } = await ch.queueDeclare(name, { passive: true });
  expect(messageCount === want, `${when}: ${messageCount} messages in ${name}, want ${want}`);
}

const returned = (ch) => new Promise((resolve) => { ch.onReturn = resolve; });

const basics = [
  ["connect", async () => {
    conn = await new AMQPClient(url).connect();
    const connection = await new AMQPClient(`${url}?heartbeat=1`).connect();
    idle = { connection, opened: Date.now(), error: null };
    connection.onerror = (error) => { idle.error = error; };
    timeouts = await startConsumerTimeouts();
  }],
  ["publish-consume", () => publishConsume(conn, `${prefix}-pc`)],
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
    await expectCount(ch, name, 50, "after 50 confirms");
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
];

const features = [
  ["transactions", async () => {
    // committed publish delivered, rolled-back one not; a rolled-back ack leaves the message
    // unacked (requeued when the channel closes), a committed ack removes it
    const name = `${prefix}-tx`;
    const other = await conn.channel();
    await other.queueDeclare(name, { durable: false, autoDelete: false });
    let ch = await conn.channel();
    await ch.txSelect();
    await ch.basicPublish("", name, "committed");
    await ch.txCommit();
    await ch.basicPublish("", name, "rolled back");
    await ch.txRollback();
    await expectCount(other, name, 1, "after commit and rollback");
    const first = await ch.basicGet(name, { noAck: false });
    expect(first && first.bodyToString() === "committed", `got ${first && first.bodyToString()}`);
    await first.ack();
    await ch.txRollback();
    await ch.close();
    await expectCount(other, name, 1, "after a rolled-back ack and close");
    ch = await conn.channel();
    await ch.txSelect();
    const again = await ch.basicGet(name, { noAck: false });
    expect(again && again.redelivered, "the requeued message is not marked redelivered");
    await again.ack();
    await ch.txCommit();
    await ch.close();
    await expectCount(other, name, 0, "after a committed ack");
    await other.queueDelete(name);
    await other.close();
  }],
  ["return", async () => {
    const ch = await conn.channel();
    const key = `${prefix}-nowhere`;
    const back = returned(ch);
    await ch.basicPublish("amq.direct", key, "back", {}, true);
    const msg = await back;
    expect(msg.replyCode === 312 && msg.replyText === "NO_ROUTE" && msg.exchange === "amq.direct"
      && msg.routingKey === key && msg.bodyToString() === "back",
    `returned ${msg.replyCode} ${msg.replyText} ${msg.exchange} ${msg.routingKey}`);
    await ch.close();
  }],
  ["consumer-cancel", async () => {
    const ch = await conn.channel();
    const name = `${prefix}-cancel`;
    await ch.queueDeclare(name, { durable: false, autoDelete: false });
    const consumer = await ch.basicConsume(name, { noAck: false }, () => {});
    const ended = consumer.wait().then(() => null, (error) => error);
    const other = await conn.channel();
    await other.queueDelete(name);
    const error = await ended;
    expect(error && /cancelled by the server/.test(error.message), `consumer ended with ${error}`);
    await ch.queueDeclare(`${name}-after`, { autoDelete: true });
    await other.close();
    await ch.close();
  }],
  ["qos", async () => {
    const ch = await conn.channel();
    const name = `${prefix}-qos`;
    await ch.queueDeclare(name, { autoDelete: true });
    await ch.basicQos(2);
    for (let i = 0; i < 5; i++) await ch.basicPublish("", name, String(i));
    const got = [];
    await ch.basicConsume(name, { noAck: false }, (msg) => { got.push(msg); });
    await waitFor(() => got.length === 2);
    await expectCount(ch, name, 3, "with 2 unacked under prefetch 2");
    for (let i = 2; i < 5; i++) {
      await got[i - 2].ack();
      await waitFor(() => got.length === i + 1);
    }
    expect(got.map((m) => m.bodyToString()).join() === "0,1,2,3,4", "out of order");
    await got[4].ack(true);
    await ch.close();
  }],
  ["nack-requeue", async () => {
    const ch = await conn.channel();
    const name = `${prefix}-nack`;
    await ch.queueDeclare(name, { autoDelete: true });
    const messages = inbox();
    await ch.basicConsume(name, { noAck: false }, (msg) => messages.push(msg));
    await ch.basicPublish("", name, "again");
    const first = await messages.next();
    expect(!first.redelivered, "the first delivery is marked redelivered");
    await first.nack(true);
    const second = await messages.next();
    expect(second.redelivered && second.bodyToString() === "again", "no redelivered flag");
    await second.ack();
    await ch.close();
  }],
  ["dead-letter", async () => {
    const ch = await conn.channel();
    const name = `${prefix}-dl`;
    const dlq = `${name}-dead`;
    await ch.queueDeclare(dlq, { autoDelete: true });
    await ch.queueDeclare(name, { autoDelete: true },
      { "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq });
    const messages = inbox();
    await ch.basicConsume(name, { noAck: false }, (msg) => messages.push(msg));
    await ch.basicPublish("", name, "dead");
    await (await messages.next()).reject(false);
    const dead = inbox();
    await ch.basicConsume(dlq, { noAck: true }, (msg) => dead.push(msg));
    const msg = await dead.next();
    const deaths = msg.properties.headers["x-death"];
    expect(msg.bodyToString() === "dead" && deaths.length === 1 && deaths[0].reason === "rejected"
      && deaths[0].queue === name && Number(deaths[0].count) === 1, `x-death ${JSON.stringify(deaths)}`);
    await ch.close();
  }],
  ["exchange-binding", async () => {
    const ch = await conn.channel();
    const name = `${prefix}-e2e`;
    const [source, destination] = [`${name}-source`, `${name}-destination`];
    await ch.exchangeDeclare(source, "topic", { durable: false });
    await ch.exchangeDeclare(destination, "fanout", { durable: false });
    await ch.exchangeBind(destination, source, "a.*");
    await ch.queueDeclare(name, { autoDelete: true });
    await ch.queueBind(name, destination, "");
    const back = returned(ch);
    await ch.basicPublish(source, "a.b", "matched", {}, true);
    await ch.basicPublish(source, "b.a", "unmatched", {}, true);
    expect((await back).bodyToString() === "unmatched", "the wrong message came back");
    const msg = await ch.basicGet(name, { noAck: true });
    expect(msg && msg.bodyToString() === "matched" && msg.exchange === source && msg.routingKey === "a.b",
      `got ${msg && msg.bodyToString()} from ${msg && msg.exchange}`);
    await expectCount(ch, name, 0, "after the matched message");
    await ch.exchangeDelete(source);
    await ch.exchangeDelete(destination);
    await ch.close();
  }],
  ["headers-exchange", async () => {
    const ch = await conn.channel();
    await ch.confirmSelect();
    const name = `${prefix}-headers`;
    await ch.exchangeDeclare(name, "headers", { durable: false });
    const bindings = {
      [`${name}-all`]: { "x-match": "all", format: "pdf", size: 2 },
      [`${name}-any`]: { "x-match": "any", format: "pdf", type: "report" },
    };
    for (const [queue, args] of Object.entries(bindings)) {
      await ch.queueDeclare(queue, { autoDelete: true });
      await ch.queueBind(queue, name, "", args);
    }
    const back = returned(ch);
    await Promise.all([{ format: "pdf", size: 2 }, { format: "pdf", size: 3 }, { type: "letter" }].map(
      (headers) => ch.basicPublish(name, "", "h", { headers }, true)));
    expect((await back).properties.headers.type === "letter", "the wrong message came back");
    await expectCount(ch, `${name}-all`, 1, "x-match all");
    await expectCount(ch, `${name}-any`, 2, "x-match any");
    await ch.exchangeDelete(name);
    await ch.close();
  }],
  ["large-message", async () => {
    // this client negotiates frame_max 8192: the broker must split the body at that size
    const ch = await conn.channel();
    const name = `${prefix}-large`;
    await ch.queueDeclare(name, { autoDelete: true });
    const body = Buffer.alloc((1 << 20) + 7, 0).map((_, i) => (i * 7) & 0xff);
    await ch.basicPublish("", name, body);
    const messages = inbox();
    await ch.basicConsume(name, { noAck: true }, (msg) => messages.push(msg));
    const msg = await messages.next();
    expect(body.equals(Buffer.from(msg.body)), `got ${msg.bodySize} bytes, want ${body.length}`);
    await ch.close();
  }],
  ["channel-errors", async () => {
    // the broker's channel.close codes and texts, as RabbitMQ words them; each closes only its channel
    const name = `${prefix}-errors`;
    const expectClose = async (what, code, text, call) => {
      const ch = await conn.channel();
      const error = await call(ch).then(() => ch.queueDeclare("", { exclusive: true })).then(() => null, (e) => e);
      expect(error && error.message.endsWith(`closed: ${text} (${code})`), `${what}: got ${error}, want ${code} ${text}`);
    };
    await expectClose("passive declare", 404, `NOT_FOUND - no queue '${name}' in vhost '/'`,
      (ch) => ch.queueDeclare(name, { passive: true }));
    const ch = await conn.channel();
    await ch.queueDeclare(name, { autoDelete: true, durable: false });
    await expectClose("inequivalent declare", 406, `PRECONDITION_FAILED - inequivalent arg 'durable' for queue `
      + `'${name}' in vhost '/': received 'true' but current is 'false'`,
    (other) => other.queueDeclare(name, { autoDelete: true, durable: true }));
    await expectClose("publish to a missing exchange", 404, `NOT_FOUND - no exchange '${name}-missing' in vhost '/'`,
      (other) => other.basicPublish(`${name}-missing`, "k", "x"));
    await ch.queueDeclare(name, { passive: true });
    expect(!conn.closed, "the connection was closed");
    await ch.close();
  }],
  ["direct-reply-to", async () => {
    const server = await conn.channel();
    const name = `${prefix}-rpc`;
    await server.queueDeclare(name, { autoDelete: true });
    const requests = inbox();
    await server.basicConsume(name, { noAck: true }, (msg) => requests.push(msg));
    const client = await conn.channel();
    const replies = inbox();
    await client.basicConsume(REPLY_TO, { noAck: true }, (msg) => replies.push(msg));
    await client.basicPublish("", name, "ping", { replyTo: REPLY_TO, correlationId: "call-1" });
    const request = await requests.next();
    const { replyTo, correlationId } = request.properties;
    expect(replyTo.startsWith(`${REPLY_TO}.`), `the request's reply_to is ${replyTo}`);
    await server.basicPublish("", replyTo, "pong", { correlationId });
    const reply = await replies.next();
    expect(reply.bodyToString() === "pong" && reply.properties.correlationId === "call-1",
      `reply ${reply.bodyToString()} correlation ${reply.properties.correlationId}`);
    await client.close();
    await server.close();
  }],
  ["ttl-expired", async () => {
    // expiration "0" and no consumer: dead-lettered at once, the expiration kept in x-death
    const ch = await conn.channel();
    const name = `${prefix}-ttl`;
    const dlq = `${name}-dead`;
    await ch.queueDeclare(dlq, { autoDelete: true });
    await ch.queueDeclare(name, { autoDelete: true },
      { "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq });
    await ch.basicPublish("", name, "late", { expiration: "0" });
    const dead = inbox();
    await ch.basicConsume(dlq, { noAck: true }, (msg) => dead.push(msg));
    const msg = await dead.next();
    const [death, ...more] = msg.properties.headers["x-death"];
    expect(more.length === 0 && msg.properties.expiration === undefined && death.reason === "expired"
      && death.queue === name && death["original-expiration"] === "0",
    `expiration ${msg.properties.expiration}, x-death ${JSON.stringify(msg.properties.headers["x-death"])}`);
    await ch.close();
  }],
  ["reject-publish", async () => {
    const ch = await conn.channel();
    await ch.confirmSelect();
    const name = `${prefix}-full`;
    await ch.queueDeclare(name, { autoDelete: true }, { "x-max-length": 1, "x-overflow": "reject-publish" });
    const got = await Promise.all(["kept", "refused"].map(
      (body) => ch.basicPublish("", name, body).then(() => "ack", () => "nack")));
    expect(got.join() === "ack,nack", `confirms ${got}, want ack,nack`);
    await expectCount(ch, name, 1, "after the refused publish");
    await ch.close();
  }],
  ["priority", async () => {
    const ch = await conn.channel();
    await ch.confirmSelect();
    const name = `${prefix}-priority`;
    await ch.queueDeclare(name, { autoDelete: true }, { "x-max-priority": 5 });
    await Promise.all([1, 5, 3].map((priority) => ch.basicPublish("", name, String(priority), { priority })));
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await ch.basicGet(name, { noAck: true })).bodyToString());
    expect(got.join() === "5,3,1", `got priorities ${got}, want 5,3,1`);
    await ch.close();
  }],
  ["alternate-exchange", async () => {
    // no basic.return for what the alternate exchange takes: the confirm comes after any return would
    const ch = await conn.channel();
    await ch.confirmSelect();
    const name = `${prefix}-ae`;
    const alternate = `${name}-alternate`;
    let returnedMessage = null;
    ch.onReturn = (msg) => { returnedMessage = msg; };
    await ch.exchangeDeclare(alternate, "fanout", { durable: false });
    await ch.exchangeDeclare(name, "direct", { durable: false }, { "alternate-exchange": alternate });
    await ch.queueDeclare(name, { autoDelete: true });
    await ch.queueBind(name, alternate, "");
    await ch.basicPublish(name, "unbound", "caught", {}, true);
    expect(returnedMessage === null, "the message was returned");
    const msg = await ch.basicGet(name, { noAck: true });
    expect(msg && msg.bodyToString() === "caught", `got ${msg && msg.bodyToString()}`);
    await ch.exchangeDelete(name);
    await ch.exchangeDelete(alternate);
    await ch.close();
  }],
  ["heartbeat", async () => {
    expect(idle.connection.heartbeat === 1, `negotiated ${idle.connection.heartbeat}`);
    await sleep(idle.opened + IDLE_MS - Date.now());
    expect(idle.error === null && !idle.connection.closed, `the idle connection failed: ${idle.error}`);
    const ch = await idle.connection.channel();
    await ch.queueDeclare(`${prefix}-hb`, { autoDelete: true });
    await idle.connection.close();
  }],
  ["update-secret", async () => {
    // update-secret-ok for a right and a wrong secret alike (RabbitMQ's internal users); a channel
    // opened before the update and one opened after both work on
    const before = await conn.channel();
    const name = `${prefix}-secret`;
    await before.queueDeclare(name, { autoDelete: true });
    await conn.updateSecret("guest", "token refresh");
    await conn.updateSecret("a refreshed token", "token refresh");
    await before.basicPublish("", name, "after update-secret");
    const after = await conn.channel();
    const messages = inbox();
    await after.basicConsume(name, { noAck: true }, (msg) => messages.push(msg));
    const msg = await messages.next();
    expect(msg.bodyToString() === "after update-secret", `got ${msg.bodyToString()}`);
    await after.close();
    await before.close();
  }],
  ["consumer-timeout", async () => {
    const other = await conn.channel();
    for (const { name, number, closed } of timeouts) {
      const reason = await closed;
      expect(reason === `channel ${number} closed: ${timeoutText(number)} (406)`,
        `channel ${number}: got ${reason}, want 406 ${timeoutText(number)}`);
      const messages = inbox();
      await other.basicConsume(name, { noAck: false }, (msg) => messages.push(msg));
      const msg = await messages.next();
      expect(msg.bodyToString() === "held" && msg.redelivered, `got ${msg.bodyToString()} redelivered=${msg.redelivered}`);
      await msg.ack();
    }
    await other.close();
  }],
  ["close", async () => { await conn.close(); }],
];

const flagged = [
  ["tls", async () => {
    const { amqpsUrl, ca } = flaggedEnv();
    const refused = await new AMQPClient(amqpsUrl).connect().then((c) => c.close().then(() => null), (e) => e);
    expect(refused && /certificate/.test(refused.message), `without the test CA: ${refused}`);
    const connection = await new AMQPClient(amqpsUrl, { ca: [fs.readFileSync(ca)] }).connect();
    expect(connection.socket.encrypted, "not a TLS socket");
    await publishConsume(connection, `${prefix}-tls`);
    await connection.close();
  }],
  ["blocked", async () => {
    const { filler, fillerBytes } = flaggedEnv();
    const connection = await new AMQPClient(url).connect();
    const ch = await connection.channel();
    await ch.confirmSelect();
    const name = `${prefix}-blocked`;
    await ch.queueDeclare(name, { autoDelete: true });
    fs.writeFileSync(filler, Buffer.alloc(fillerBytes));
    try {
      const confirmed = [];
      while (!connection.blocked) {  // the broker measures free space every 0.1 s
        confirmed.push(ch.basicPublish("", name, "held"));
        await sleep(100);
      }
      expect(connection.blocked === "low on disk", `blocked: ${connection.blocked}`);
      fs.unlinkSync(filler);
      await waitFor(() => connection.blocked === undefined);
      await Promise.all(confirmed);
      await expectCount(ch, name, confirmed.length, "after unblocking");
    } finally {
      fs.rmSync(filler, { force: true });
    }
    await connection.close();
  }],
];

runAll(mode === "flagged" ? flagged : [...basics, ...features]);
