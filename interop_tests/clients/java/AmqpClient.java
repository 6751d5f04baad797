// RabbitMQ's Java client (Debian's librabbitmq-client-java) against the broker:
// java -cp CLASSES:amqp-client.jar:slf4j-api.jar:slf4j-nop.jar AmqpClient AMQP_URL PREFIX [flagged|streams|delayed].
// It runs each scenario in turn and prints "ok NAME" for each, then "done"; the first failure prints
// "FAIL NAME: error" and exits 1. Every wait is bounded. interop_tests/test_other_languages.py
// compiles it with plain javac (no Maven) and asserts on these lines. The scenarios beyond the
// basics are in Features.java, More.java and Timeouts.java; those that need a broker started with flags in
// Flagged.java; "streams" and "delayed" run Streams.java's and Delayed.java's steps instead.
import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import com.rabbitmq.client.Delivery;
import com.rabbitmq.client.GetResponse;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

public final class AmqpClient {
    static final int TIMEOUT_SECONDS = 10;

    interface Scenario {
        void run() throws Exception;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 2 || args.length > 3) {
            System.out.println("usage: AmqpClient AMQP_URL PREFIX [flagged|streams|delayed]");
            System.exit(2);
        }
        String url = args[0];
        String prefix = args[1];
        switch (args.length == 3 ? args[2] : "") {
            case "flagged" -> Flagged.runAll(url, prefix);
            case "streams" -> Streams.runAll(url, prefix);
            case "delayed" -> Delayed.runAll(url, prefix);
            default -> runAll(url, prefix);
        }
        System.out.println("done");
        System.exit(0);
    }

    static void runAll(String url, String prefix) throws Exception {
        Connection[] conn = new Connection[1];
        Features.Idle[] idle = new Features.Idle[1];
        Timeouts[] timeouts = new Timeouts[1];
        run("connect", () -> {
            conn[0] = factory(url).newConnection();
            timeouts[0] = Timeouts.start(conn[0], prefix + "-timeout");
            idle[0] = Features.Idle.open(url);
        });
        Connection c = conn[0];
        run("publish-consume", () -> publishConsume(c, prefix + "-pc"));
        run("get", () -> get(c, prefix + "-get"));
        run("confirms", () -> confirms(c, prefix + "-confirms"));
        run("crossing-close", () -> crossingClose(c, prefix + "-cross"));
        run("transactions", () -> Features.transactions(c, prefix + "-tx"));
        run("return", () -> Features.mandatoryReturn(c, prefix + "-nowhere"));
        run("consumer-cancel", () -> Features.consumerCancel(c, prefix + "-cancel"));
        run("qos", () -> Features.qos(c, prefix + "-qos"));
        run("nack-requeue", () -> Features.nackRequeue(c, prefix + "-nack"));
        run("dead-letter", () -> Features.deadLetter(c, prefix + "-dl"));
        run("exchange-binding", () -> Features.exchangeBinding(c, prefix + "-e2e"));
        run("headers-exchange", () -> Features.headersExchange(c, prefix + "-headers"));
        run("large-message", () -> Features.largeMessage(c, prefix + "-large"));
        run("channel-errors", () -> Features.channelErrors(c, prefix + "-errors"));
        run("direct-reply-to", () -> More.directReplyTo(c, prefix + "-rpc"));
        run("ttl-expired", () -> More.ttlExpired(c, prefix + "-ttl"));
        run("reject-publish", () -> More.rejectPublish(c, prefix + "-full"));
        run("priority", () -> More.priority(c, prefix + "-priority"));
        run("alternate-exchange", () -> More.alternateExchange(c, prefix + "-ae"));
        run("heartbeat", () -> idle[0].check(prefix + "-hb"));
        run("consumer-timeout", () -> timeouts[0].check());
        run("close", () -> c.close());
    }

    static void run(String name, Scenario scenario) {
        try {
            scenario.run();
        } catch (Throwable error) {
            System.out.println("FAIL " + name + ": " + error);
            error.printStackTrace();
            System.exit(1);
        }
        System.out.println("ok " + name);
    }

    static void expect(boolean condition, String message) {
        if (!condition) {
            throw new AssertionError(message);
        }
    }

    /** A factory for url with bounded timeouts and no automatic recovery (a failure must show). The
     * Java client reads the URI spec strictly: "amqp://host/" names the vhost "" (RabbitMQ refuses
     * it: 530 "vhost  not found"), so a bare "/" path means the default vhost "/", as other clients take it. */
    static ConnectionFactory factory(String url) throws Exception {
        ConnectionFactory factory = new ConnectionFactory();
        factory.setUri(url);
        if (java.net.URI.create(url).getRawPath().equals("/")) {
            factory.setVirtualHost("/");
        }
        factory.setAutomaticRecoveryEnabled(false);
        factory.setConnectionTimeout(TIMEOUT_SECONDS * 1000);
        factory.setHandshakeTimeout(TIMEOUT_SECONDS * 1000);
        return factory;
    }

    static byte[] bytes(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }

    static String text(byte[] body) {
        return new String(body, StandardCharsets.UTF_8);
    }

    static String text(Delivery delivery) {
        return text(delivery.getBody());
    }

    /** Deliveries to a consumer, taken in order, and whether the broker cancelled it (basic.cancel). */
    static final class Inbox {
        final BlockingQueue<Delivery> deliveries = new LinkedBlockingQueue<>();
        final CountDownLatch cancelled = new CountDownLatch(1);
        final String tag;

        Inbox(Channel channel, String queue, boolean autoAck) throws Exception {
            this(channel, queue, autoAck, Map.of());
        }

        Inbox(Channel channel, String queue, boolean autoAck, Map<String, Object> arguments) throws Exception {
            tag = channel.basicConsume(
                    queue, autoAck, arguments, (t, d) -> deliveries.add(d), t -> cancelled.countDown());
        }

        Delivery next(String what) throws InterruptedException {
            Delivery delivery = deliveries.poll(TIMEOUT_SECONDS, TimeUnit.SECONDS);
            expect(delivery != null, "no delivery of " + what);
            return delivery;
        }
    }

    static void declareTransient(Channel ch, String queue) throws Exception {
        ch.queueDeclare(queue, false, false, true, null);
    }

    static void expectCount(Channel ch, String queue, int want, String when) throws Exception {
        int count = ch.queueDeclarePassive(queue).getMessageCount();
        expect(count == want, when + ": " + count + " messages in " + queue + ", want " + want);
    }

    static void publishConsume(Connection conn, String queue) throws Exception {
        Channel ch = conn.createChannel();
        declareTransient(ch, queue);
        Inbox inbox = new Inbox(ch, queue, false);
        for (int i = 0; i < 3; i++) {
            AMQP.BasicProperties props =
                    new AMQP.BasicProperties.Builder().contentType("text/plain").headers(Map.of("n", i)).build();
            ch.basicPublish("", queue, props, bytes("message " + i));
            Delivery d = inbox.next("message " + i);
            Object n = d.getProperties().getHeaders().get("n");
            expect(text(d).equals("message " + i) && "text/plain".equals(d.getProperties().getContentType())
                    && Integer.valueOf(i).equals(n), "got " + text(d) + " " + d.getProperties());
            ch.basicAck(d.getEnvelope().getDeliveryTag(), false);
        }
        ch.close();
    }

    static void get(Connection conn, String queue) throws Exception {
        Channel ch = conn.createChannel();
        declareTransient(ch, queue);
        expect(ch.basicGet(queue, true) == null, "get on an empty queue returned a message");
        ch.confirmSelect();
        ch.basicPublish("", queue, null, bytes("got"));
        ch.waitForConfirmsOrDie(TIMEOUT_SECONDS * 1000);
        GetResponse got = ch.basicGet(queue, true);
        expect(got != null && text(got.getBody()).equals("got"), "got " + got);
        ch.queueDelete(queue);
        ch.close();
    }

    static void confirms(Connection conn, String queue) throws Exception {
        Channel ch = conn.createChannel();
        ch.confirmSelect();
        List<Long> acked = new java.util.concurrent.CopyOnWriteArrayList<>();
        ch.addConfirmListener((tag, multiple) -> acked.add(tag), (tag, multiple) -> acked.add(-tag));
        declareTransient(ch, queue);
        for (int i = 0; i < 50; i++) {
            ch.basicPublish("", queue, null, bytes("c"));
        }
        ch.waitForConfirmsOrDie(TIMEOUT_SECONDS * 1000);
        expect(acked.stream().allMatch(tag -> tag > 0) && acked.get(acked.size() - 1) == 50, "confirms " + acked);
        expectCount(ch, queue, 50, "after 50 confirms");
        ch.queueDelete(queue);
        ch.close();
    }

    /** A publish to a missing exchange, then close at once: our channel.close crosses the broker's 404. */
    static void crossingClose(Connection conn, String queue) throws Exception {
        Channel control = conn.createChannel();
        for (int i = 0; i < 20; i++) {
            Channel ch = conn.createChannel();
            ch.basicPublish(queue + "-missing-exchange", "k", null, bytes("x"));
            try {
                ch.close();
            } catch (Exception closedByTheBroker) { // either close-ok or the broker's 404 ends the channel
            }
            declareTransient(control, queue);
        }
        expect(conn.isOpen(), "the connection was closed: " + conn.getCloseReason());
        Channel ch = conn.createChannel();
        ch.queueDeclarePassive(queue);
        ch.close();
        control.close();
    }
}
