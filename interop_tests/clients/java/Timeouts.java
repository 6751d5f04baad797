// Consumer timeouts: one delivery left unacked on each of three channels: consumed from a queue
// declared with x-consumer-timeout, consumed through a basic.consume with it, and taken by basic.get
// from a queue with it. Started right after connect and checked
// near the end, so the wait overlaps the other scenarios. (The Java client 5.0 has no
// connection.update-secret: no Connection.updateSecret and no method class for it.)
import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.Delivery;
import com.rabbitmq.client.ShutdownSignalException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

final class Timeouts {
    static final int CONSUMER_TIMEOUT_MS = 1000;

    /** A channel that consumed a message and never acks it; its close, once the broker sends it. */
    record Held(String queue, int number, CompletableFuture<ShutdownSignalException> closed) {}

    final Connection conn;
    final List<Held> held = new ArrayList<>();

    private Timeouts(Connection conn) {
        this.conn = conn;
    }

    static Timeouts start(Connection conn, String prefix) throws Exception {
        Timeouts timeouts = new Timeouts(conn);
        // an Integer (a 32-bit field) on the queue, a Long on the consumer: RabbitMQ takes any integer type
        Map<String, Object> onQueue = Map.of("x-consumer-timeout", CONSUMER_TIMEOUT_MS);
        timeouts.hold(prefix + "-1", onQueue, Map.of(), false);
        timeouts.hold(prefix + "-2", Map.of(), Map.of("x-consumer-timeout", (long) CONSUMER_TIMEOUT_MS), false);
        timeouts.hold(prefix + "-3", onQueue, Map.of(), true);
        return timeouts;
    }

    /** Take the queue's message without acking it: by basic.consume, or with get by basic.get (whose
     * get-ok awaits an ack too). */
    void hold(String queue, Map<String, Object> queueArguments, Map<String, Object> consumeArguments, boolean get)
            throws Exception {
        Channel ch = conn.createChannel();
        CompletableFuture<ShutdownSignalException> closed = new CompletableFuture<>();
        ch.addShutdownListener(closed::complete);
        // exclusive, not auto-delete: the timeout's channel.close cancels the consumer, the queue stays
        ch.queueDeclare(queue, false, true, false, queueArguments);
        ch.confirmSelect(); // the message is in the queue before a basic.get looks
        ch.basicPublish("", queue, null, AmqpClient.bytes("held"));
        ch.waitForConfirmsOrDie(AmqpClient.TIMEOUT_SECONDS * 1000);
        if (get) {
            AmqpClient.expect(ch.basicGet(queue, false) != null, "basic.get found no message in " + queue);
        } else {
            CompletableFuture<Delivery> delivered = new CompletableFuture<>();
            ch.basicConsume(queue, false, consumeArguments, (tag, d) -> delivered.complete(d), tag -> {});
            delivered.get(AmqpClient.TIMEOUT_SECONDS, TimeUnit.SECONDS);
        }
        held.add(new Held(queue, ch.getChannelNumber(), closed));
    }

    /** Each held channel was closed with RabbitMQ's 406 and its message comes again, redelivered,
     * to a consumer on another channel. */
    void check() throws Exception {
        Channel other = conn.createChannel();
        for (Held h : held) {
            ShutdownSignalException signal = h.closed().get(AmqpClient.TIMEOUT_SECONDS, TimeUnit.SECONDS);
            String want = "PRECONDITION_FAILED - delivery acknowledgement on channel " + h.number()
                    + " timed out. Timeout value used: " + CONSUMER_TIMEOUT_MS + " ms. "
                    + "This timeout value can be configured, see consumers doc guide to learn more";
            AMQP.Channel.Close close = signal.getReason() instanceof AMQP.Channel.Close c ? c : null;
            AmqpClient.expect(!signal.isInitiatedByApplication() && close != null && close.getReplyCode() == 406
                    && close.getReplyText().equals(want), "channel " + h.number() + ": " + signal + ", want 406 " + want);
            Delivery d = new AmqpClient.Inbox(other, h.queue(), false).next("the requeued message");
            AmqpClient.expect(AmqpClient.text(d).equals("held") && d.getEnvelope().isRedeliver(),
                    "got " + AmqpClient.text(d) + " redelivered=" + d.getEnvelope().isRedeliver());
            other.basicAck(d.getEnvelope().getDeliveryTag(), false);
        }
        other.close();
    }
}
