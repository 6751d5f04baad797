// A stream queue, run by "AmqpClient AMQP_URL PREFIX streams": declare a stream (x-queue-type:
// stream), publish ten messages with confirms, then consume with basic.qos and manual acks from
// "first" and from offset 5, checking each delivery's x-stream-offset header (a long). The offset
// goes as an int (the Java client writes an Integer as a signed 32-bit field; Go and Node write
// others), as RabbitMQ takes any integer. The steps are those of clients/go/streams and
// clients/node/streams.js (interop_tests/test_streams_other_languages.py).
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.Delivery;
import java.util.Map;

final class Streams {
    static final int COUNT = 10;

    private Streams() {}

    static void runAll(String url, String prefix) throws Exception {
        Connection[] conn = new Connection[1];
        AmqpClient.run("connect", () -> conn[0] = AmqpClient.factory(url).newConnection());
        Connection c = conn[0];
        String stream = prefix + "-stream";
        AmqpClient.run("declare-publish", () -> declarePublish(c, stream));
        AmqpClient.run("consume-first", () -> consumeFrom(c, stream, "first", 0));
        AmqpClient.run("consume-offset", () -> consumeFrom(c, stream, 5, 5));
        AmqpClient.run("delete", () -> {
            Channel ch = c.createChannel();
            ch.queueDelete(stream);
            ch.close();
        });
        AmqpClient.run("close", () -> c.close());
    }

    static void declarePublish(Connection conn, String stream) throws Exception {
        Channel ch = conn.createChannel();
        ch.queueDeclare(stream, true, false, false, Map.of("x-queue-type", "stream"));
        ch.confirmSelect();
        for (int i = 0; i < COUNT; i++) {
            ch.basicPublish("", stream, null, AmqpClient.bytes("m" + i));
        }
        ch.waitForConfirmsOrDie(AmqpClient.TIMEOUT_SECONDS * 1000);
        ch.close();
    }

    /** Messages first..COUNT-1 arrive from offset, each with its offset in x-stream-offset. */
    static void consumeFrom(Connection conn, String stream, Object offset, int first) throws Exception {
        Channel ch = conn.createChannel();
        ch.basicQos(3); // a stream consumer needs a prefetch count
        AmqpClient.Inbox inbox = new AmqpClient.Inbox(ch, stream, false, Map.of("x-stream-offset", offset));
        for (int want = first; want < COUNT; want++) {
            Delivery d = inbox.next("offset " + want);
            Object got = d.getProperties().getHeaders().get("x-stream-offset");
            AmqpClient.expect(Long.valueOf(want).equals(got) && AmqpClient.text(d).equals("m" + want),
                    "got " + AmqpClient.text(d) + " with x-stream-offset " + got + ", want m" + want + " at " + want);
            ch.basicAck(d.getEnvelope().getDeliveryTag(), false); // gives the prefetch credit back
        }
        ch.close();
    }
}
