// The scenarios beyond the basics: transactions, mandatory returns, consumer cancel notifications,
// prefetch, nack with requeue, dead-lettering, exchange-to-exchange bindings, headers exchanges and
// heartbeats. Each checks what the client observes, never how fast.
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import com.rabbitmq.client.Delivery;
import com.rabbitmq.client.GetResponse;
import com.rabbitmq.client.Return;
import com.rabbitmq.client.ReturnCallback;
import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.LongString;
import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Date;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

final class Features {
    private Features() {}

    static BlockingQueue<Return> returns(Channel ch) {
        BlockingQueue<Return> returns = new LinkedBlockingQueue<>();
        ch.addReturnListener((ReturnCallback) returns::add);
        return returns;
    }

    static Return returned(BlockingQueue<Return> returns, String what) throws InterruptedException {
        Return r = returns.poll(AmqpClient.TIMEOUT_SECONDS, TimeUnit.SECONDS);
        AmqpClient.expect(r != null, "no basic.return of " + what);
        return r;
    }

    /** A committed publish is delivered, a rolled-back one is not; an ack rolled back leaves the
     * message unacked (requeued when the channel closes), an ack committed removes it. */
    static void transactions(Connection conn, String queue) throws Exception {
        Channel other = conn.createChannel();
        other.queueDeclare(queue, false, false, false, null);
        Channel ch = conn.createChannel();
        ch.txSelect();
        ch.basicPublish("", queue, null, AmqpClient.bytes("committed"));
        ch.txCommit();
        ch.basicPublish("", queue, null, AmqpClient.bytes("rolled back"));
        ch.txRollback();
        AmqpClient.expectCount(other, queue, 1, "after commit and rollback");
        GetResponse first = ch.basicGet(queue, false);
        AmqpClient.expect(first != null && AmqpClient.text(first.getBody()).equals("committed"), "got " + first);
        ch.basicAck(first.getEnvelope().getDeliveryTag(), false);
        ch.txRollback();
        ch.close();
        AmqpClient.expectCount(other, queue, 1, "after a rolled-back ack and close");
        ch = conn.createChannel();
        ch.txSelect();
        GetResponse again = ch.basicGet(queue, false);
        AmqpClient.expect(again != null && again.getEnvelope().isRedeliver(), "no redelivered message");
        ch.basicAck(again.getEnvelope().getDeliveryTag(), false);
        ch.txCommit();
        ch.close();
        AmqpClient.expectCount(other, queue, 0, "after a committed ack");
        other.queueDelete(queue);
        other.close();
    }

    /** A mandatory publish nothing is bound for comes back as basic.return 312 NO_ROUTE. */
    static void mandatoryReturn(Connection conn, String key) throws Exception {
        Channel ch = conn.createChannel();
        BlockingQueue<Return> returns = returns(ch);
        ch.basicPublish("amq.direct", key, true, null, AmqpClient.bytes("back"));
        Return r = returned(returns, "the unroutable message");
        AmqpClient.expect(r.getReplyCode() == 312 && r.getReplyText().equals("NO_ROUTE")
                && r.getExchange().equals("amq.direct") && r.getRoutingKey().equals(key)
                && AmqpClient.text(r.getBody()).equals("back"),
                "returned " + r.getReplyCode() + " " + r.getReplyText() + " " + r.getExchange() + " " + r.getRoutingKey());
        ch.close();
    }

    /** Deleting the queue under a consumer sends basic.cancel; the channel stays open. */
    static void consumerCancel(Connection conn, String queue) throws Exception {
        Channel ch = conn.createChannel();
        ch.queueDeclare(queue, false, false, false, null);
        AmqpClient.Inbox inbox = new AmqpClient.Inbox(ch, queue, false);
        Channel other = conn.createChannel();
        other.queueDelete(queue);
        AmqpClient.expect(inbox.cancelled.await(AmqpClient.TIMEOUT_SECONDS, TimeUnit.SECONDS), "no basic.cancel");
        AmqpClient.declareTransient(ch, queue + "-after");
        other.close();
        ch.close();
    }

    /** With prefetch 2 the broker holds the rest until an ack frees a slot. */
    static void qos(Connection conn, String queue) throws Exception {
        Channel ch = conn.createChannel();
        AmqpClient.declareTransient(ch, queue);
        ch.basicQos(2);
        for (int i = 0; i < 5; i++) {
            ch.basicPublish("", queue, null, AmqpClient.bytes(String.valueOf(i)));
        }
        AmqpClient.Inbox inbox = new AmqpClient.Inbox(ch, queue, false);
        List<Delivery> held = new ArrayList<>(List.of(inbox.next("message 0"), inbox.next("message 1")));
        AmqpClient.expectCount(ch, queue, 3, "with 2 unacked under prefetch 2");
        for (int i = 2; i < 5; i++) {
            ch.basicAck(held.remove(0).getEnvelope().getDeliveryTag(), false);
            Delivery d = inbox.next("message " + i);
            AmqpClient.expect(AmqpClient.text(d).equals(String.valueOf(i)), "got " + AmqpClient.text(d));
            held.add(d);
        }
        ch.basicAck(held.get(1).getEnvelope().getDeliveryTag(), true);
        ch.close();
    }

    /** A nacked message comes back with redelivered set. */
    static void nackRequeue(Connection conn, String queue) throws Exception {
        Channel ch = conn.createChannel();
        AmqpClient.declareTransient(ch, queue);
        AmqpClient.Inbox inbox = new AmqpClient.Inbox(ch, queue, false);
        ch.basicPublish("", queue, null, AmqpClient.bytes("again"));
        Delivery first = inbox.next("the message");
        AmqpClient.expect(!first.getEnvelope().isRedeliver(), "the first delivery is marked redelivered");
        ch.basicNack(first.getEnvelope().getDeliveryTag(), false, true);
        Delivery second = inbox.next("the requeued message");
        AmqpClient.expect(second.getEnvelope().isRedeliver() && AmqpClient.text(second).equals("again"),
                "no redelivered flag");
        ch.basicAck(second.getEnvelope().getDeliveryTag(), false);
        ch.close();
    }

    /** A value of each field type this client writes (t, b, s, I, l, f, d, D, S, x, T, A, F, V): they
     * must arrive as sent, also after dead-lettering adds x-death to the table. */
    static Map<String, Object> typedHeaders() {
        Map<String, Object> headers = new HashMap<>(Map.of(
                "bool", true, "int8", (byte) -3, "int16", (short) -300, "int32", -70000, "int64", -5000000000L,
                "float32", 1.5f, "float64", 2.25, "decimal", new BigDecimal("123.45"), "string", "snow \u2603",
                "bytes", new byte[] {0, 1, (byte) 254}));
        headers.put("time", new Date(1700000000000L));
        headers.put("array", List.of(1, "two", List.of("three")));
        headers.put("table", Map.of("nested", Map.of("deep", "yes")));
        headers.put("void", null);
        return headers;
    }

    /** A header value with the client's decoding differences evened out: longstr comes back as
     * LongString, byte arrays compare by content. */
    static Object comparable(Object value) {
        if (value instanceof LongString) {
            return value.toString();
        } else if (value instanceof byte[] bytes) {
            return Arrays.toString(bytes);
        } else if (value instanceof List<?> list) {
            return list.stream().map(Features::comparable).toList();
        } else if (value instanceof Map<?, ?> map) {
            Map<Object, Object> copy = new TreeMap<>();
            map.forEach((key, item) -> copy.put(key.toString(), comparable(item)));
            return copy;
        }
        return value;
    }

    static void expectHeaders(Map<String, Object> got, String when) {
        for (Map.Entry<String, Object> sent : typedHeaders().entrySet()) {
            Object want = comparable(sent.getValue());
            Object value = comparable(got.get(sent.getKey()));
            AmqpClient.expect(got.containsKey(sent.getKey()) && Objects.equals(want, value),
                    when + ": header " + sent.getKey() + " is " + value + ", want " + want);
        }
    }

    /** A rejected message moves to the dead-letter queue with an x-death header. */
    @SuppressWarnings("unchecked")
    static void deadLetter(Connection conn, String queue) throws Exception {
        Channel ch = conn.createChannel();
        String dlq = queue + "-dead";
        AmqpClient.declareTransient(ch, dlq);
        Map<String, Object> args = Map.of("x-dead-letter-exchange", "", "x-dead-letter-routing-key", dlq);
        ch.queueDeclare(queue, false, false, true, args);
        AmqpClient.Inbox inbox = new AmqpClient.Inbox(ch, queue, false);
        AMQP.BasicProperties props = new AMQP.BasicProperties.Builder().headers(typedHeaders()).build();
        ch.basicPublish("", queue, props, AmqpClient.bytes("dead"));
        Delivery first = inbox.next("the message");
        expectHeaders(first.getProperties().getHeaders(), "delivered");
        ch.basicReject(first.getEnvelope().getDeliveryTag(), false);
        Delivery d = new AmqpClient.Inbox(ch, dlq, true).next("the dead-lettered message");
        expectHeaders(d.getProperties().getHeaders(), "dead-lettered");
        List<Map<String, Object>> deaths = (List<Map<String, Object>>) d.getProperties().getHeaders().get("x-death");
        AmqpClient.expect(AmqpClient.text(d).equals("dead") && deaths != null && deaths.size() == 1
                && String.valueOf(deaths.get(0).get("reason")).equals("rejected")
                && String.valueOf(deaths.get(0).get("queue")).equals(queue)
                && Long.valueOf(1).equals(deaths.get(0).get("count")), "x-death " + deaths);
        ch.close();
    }

    /** A topic exchange bound to a fanout one forwards what its pattern matches. */
    static void exchangeBinding(Connection conn, String name) throws Exception {
        Channel ch = conn.createChannel();
        String source = name + "-source";
        String destination = name + "-destination";
        ch.exchangeDeclare(source, "topic", false);
        ch.exchangeDeclare(destination, "fanout", false);
        ch.exchangeBind(destination, source, "a.*");
        AmqpClient.declareTransient(ch, name);
        ch.queueBind(name, destination, "");
        BlockingQueue<Return> returns = returns(ch);
        ch.basicPublish(source, "a.b", true, null, AmqpClient.bytes("matched"));
        ch.basicPublish(source, "b.a", true, null, AmqpClient.bytes("unmatched"));
        Return r = returned(returns, "the unmatched message");
        AmqpClient.expect(AmqpClient.text(r.getBody()).equals("unmatched"), "the wrong message came back");
        GetResponse got = ch.basicGet(name, true);
        AmqpClient.expect(got != null && AmqpClient.text(got.getBody()).equals("matched")
                && got.getEnvelope().getExchange().equals(source) && got.getEnvelope().getRoutingKey().equals("a.b"),
                "got " + (got == null ? null : got.getEnvelope()));
        AmqpClient.expectCount(ch, name, 0, "after the matched message");
        ch.exchangeDelete(source);
        ch.exchangeDelete(destination);
        ch.close();
    }

    /** x-match all and any bindings route on message headers. */
    static void headersExchange(Connection conn, String name) throws Exception {
        Channel ch = conn.createChannel();
        ch.confirmSelect();
        ch.exchangeDeclare(name, "headers", false);
        Map<String, Map<String, Object>> bindings = Map.of(
                name + "-all", Map.of("x-match", "all", "format", "pdf", "size", 2),
                name + "-any", Map.of("x-match", "any", "format", "pdf", "type", "report"));
        for (Map.Entry<String, Map<String, Object>> binding : bindings.entrySet()) {
            AmqpClient.declareTransient(ch, binding.getKey());
            ch.queueBind(binding.getKey(), name, "", binding.getValue());
        }
        BlockingQueue<Return> returns = returns(ch);
        for (Map<String, Object> headers : List.<Map<String, Object>>of(
                Map.of("format", "pdf", "size", 2), Map.of("format", "pdf", "size", 3), Map.of("type", "letter"))) {
            AMQP.BasicProperties props = new AMQP.BasicProperties.Builder().headers(headers).build();
            ch.basicPublish(name, "", true, props, AmqpClient.bytes("h"));
        }
        Return r = returned(returns, "the message no binding matches");
        AmqpClient.expect(String.valueOf(r.getProperties().getHeaders().get("type")).equals("letter"),
                "the wrong message came back");
        ch.waitForConfirmsOrDie(AmqpClient.TIMEOUT_SECONDS * 1000);
        AmqpClient.expectCount(ch, name + "-all", 1, "x-match all");
        AmqpClient.expectCount(ch, name + "-any", 2, "x-match any");
        ch.exchangeDelete(name);
        ch.close();
    }

    /** A second connection that negotiated a 1 s heartbeat and stays idle while the other scenarios
     * run. The Java client closes a connection that reads nothing for 2 heartbeat intervals
     * (MissedHeartbeatException), so being open after 4 s means the broker's heartbeats arrived. */
    static final class Idle {
        static final long IDLE_MILLIS = 4000;
        final Connection conn;
        final long opened;

        private Idle(Connection conn) {
            this.conn = conn;
            this.opened = System.currentTimeMillis();
        }

        static Idle open(String url) throws Exception {
            ConnectionFactory factory = AmqpClient.factory(url);
            factory.setRequestedHeartbeat(1);
            return new Idle(factory.newConnection());
        }

        void check(String queue) throws Exception {
            AmqpClient.expect(conn.getHeartbeat() == 1, "negotiated heartbeat " + conn.getHeartbeat());
            Thread.sleep(Math.max(0, opened + IDLE_MILLIS - System.currentTimeMillis()));
            AmqpClient.expect(conn.isOpen(), "the idle connection closed: " + conn.getCloseReason());
            Channel ch = conn.createChannel();
            AmqpClient.declareTransient(ch, queue);
            conn.close();
        }
    }

    /** A body of several frames (at the frame_max this client negotiated) arrives whole. */
    static void largeMessage(Connection conn, String queue) throws Exception {
        Channel ch = conn.createChannel();
        AmqpClient.declareTransient(ch, queue);
        byte[] body = new byte[(1 << 20) + 7];
        for (int i = 0; i < body.length; i++) {
            body[i] = (byte) (i * 7);
        }
        ch.basicPublish("", queue, null, body);
        Delivery d = new AmqpClient.Inbox(ch, queue, true).next("the large message");
        AmqpClient.expect(Arrays.equals(d.getBody(), body),
                "got " + d.getBody().length + " bytes, want " + body.length + " (frame_max " + conn.getFrameMax() + ")");
        ch.close();
    }

    interface ChannelCall {
        void call(Channel ch) throws Exception;
    }

    /** The call must fail with the broker's channel.close code and text; only its channel closes. */
    static void expectClose(Connection conn, String what, int code, String text, ChannelCall call) throws Exception {
        Channel ch = conn.createChannel();
        try {
            call.call(ch);
            if (ch.isOpen()) {
                ch.queueDeclare(); // a round trip: a close for the call above arrives first
            }
        } catch (java.io.IOException | com.rabbitmq.client.AlreadyClosedException closed) { // checked below
        }
        com.rabbitmq.client.ShutdownSignalException signal = ch.getCloseReason();
        AmqpClient.expect(signal != null && signal.getReason() instanceof AMQP.Channel.Close,
                what + ": the channel stayed open (" + signal + ")");
        AMQP.Channel.Close close = (AMQP.Channel.Close) signal.getReason();
        AmqpClient.expect(close.getReplyCode() == code && close.getReplyText().equals(text),
                what + ": got " + close.getReplyCode() + " " + close.getReplyText() + ", want " + code + " " + text);
    }

    /** The broker's channel.close codes and texts, as RabbitMQ words them. */
    static void channelErrors(Connection conn, String queue) throws Exception {
        expectClose(conn, "passive declare", 404, "NOT_FOUND - no queue '" + queue + "' in vhost '/'",
                ch -> ch.queueDeclarePassive(queue));
        Channel ch = conn.createChannel();
        AmqpClient.declareTransient(ch, queue);
        expectClose(conn, "inequivalent declare", 406, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '"
                + queue + "' in vhost '/': received 'true' but current is 'false'",
                other -> other.queueDeclare(queue, true, false, true, null));
        expectClose(conn, "publish to a missing exchange", 404,
                "NOT_FOUND - no exchange '" + queue + "-missing' in vhost '/'",
                other -> other.basicPublish(queue + "-missing", "k", null, AmqpClient.bytes("x")));
        ch.queueDeclarePassive(queue);
        AmqpClient.expect(conn.isOpen(), "the connection closed");
        ch.close();
    }
}
