// Scenarios for features RabbitMQ users lean on beyond the protocol's core: direct reply-to,
// per-message TTL expiry dead-lettered, a length limit that rejects publishes (nacked), queue
// priorities and alternate exchanges.
import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.Delivery;
import com.rabbitmq.client.GetResponse;
import com.rabbitmq.client.Return;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

final class More {
    private More() {}

    static final String REPLY_TO = "amq.rabbitmq.reply-to";

    /** An RPC through amq.rabbitmq.reply-to, no reply queue declared. */
    static void directReplyTo(Connection conn, String queue) throws Exception {
        Channel server = conn.createChannel();
        AmqpClient.declareTransient(server, queue);
        AmqpClient.Inbox requests = new AmqpClient.Inbox(server, queue, true);
        Channel client = conn.createChannel();
        AmqpClient.Inbox replies = new AmqpClient.Inbox(client, REPLY_TO, true);
        AMQP.BasicProperties request = new AMQP.BasicProperties.Builder().replyTo(REPLY_TO).correlationId("call-1").build();
        client.basicPublish("", queue, request, AmqpClient.bytes("ping"));
        Delivery d = requests.next("the request");
        String replyTo = d.getProperties().getReplyTo();
        AmqpClient.expect(replyTo != null && replyTo.startsWith(REPLY_TO + "."), "the request's reply_to is " + replyTo);
        AMQP.BasicProperties reply =
                new AMQP.BasicProperties.Builder().correlationId(d.getProperties().getCorrelationId()).build();
        server.basicPublish("", replyTo, reply, AmqpClient.bytes("pong"));
        Delivery r = replies.next("the reply");
        AmqpClient.expect(AmqpClient.text(r).equals("pong") && "call-1".equals(r.getProperties().getCorrelationId()),
                "reply " + AmqpClient.text(r) + " correlation " + r.getProperties().getCorrelationId());
        client.close();
        server.close();
    }

    /** A message with expiration "0" and no consumer expires at once into the dead-letter queue,
     * its expiration moved to x-death's original-expiration. */
    @SuppressWarnings("unchecked")
    static void ttlExpired(Connection conn, String queue) throws Exception {
        Channel ch = conn.createChannel();
        String dlq = queue + "-dead";
        AmqpClient.declareTransient(ch, dlq);
        ch.queueDeclare(queue, false, false, true, Map.of("x-dead-letter-exchange", "", "x-dead-letter-routing-key", dlq));
        ch.basicPublish("", queue, new AMQP.BasicProperties.Builder().expiration("0").build(), AmqpClient.bytes("late"));
        Delivery d = new AmqpClient.Inbox(ch, dlq, true).next("the expired message");
        List<Map<String, Object>> deaths = (List<Map<String, Object>>) d.getProperties().getHeaders().get("x-death");
        AmqpClient.expect(d.getProperties().getExpiration() == null && deaths != null && deaths.size() == 1,
                "expired with expiration " + d.getProperties().getExpiration() + ", x-death " + deaths);
        Map<String, Object> death = deaths.get(0);
        AmqpClient.expect(String.valueOf(death.get("reason")).equals("expired")
                && String.valueOf(death.get("queue")).equals(queue)
                && String.valueOf(death.get("original-expiration")).equals("0"), "x-death " + death);
        ch.close();
    }

    /** A queue at x-max-length with x-overflow reject-publish nacks the publish beyond it. */
    static void rejectPublish(Connection conn, String queue) throws Exception {
        Channel ch = conn.createChannel();
        ch.confirmSelect();
        BlockingQueue<Long> confirms = new LinkedBlockingQueue<>();
        ch.addConfirmListener((tag, multiple) -> confirms.add(tag), (tag, multiple) -> confirms.add(-tag));
        ch.queueDeclare(queue, false, false, true, Map.of("x-max-length", 1, "x-overflow", "reject-publish"));
        ch.basicPublish("", queue, null, AmqpClient.bytes("kept"));
        ch.basicPublish("", queue, null, AmqpClient.bytes("refused"));
        List<Long> got = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            got.add(confirms.poll(AmqpClient.TIMEOUT_SECONDS, TimeUnit.SECONDS));
        }
        AmqpClient.expect(got.equals(List.of(1L, -2L)), "confirms " + got + " (negative: nacked), want [1, -2]");
        AmqpClient.expectCount(ch, queue, 1, "after the refused publish");
        ch.close();
    }

    /** A queue with x-max-priority hands out the highest priority first. */
    static void priority(Connection conn, String queue) throws Exception {
        Channel ch = conn.createChannel();
        ch.queueDeclare(queue, false, false, true, Map.of("x-max-priority", 5));
        for (int p : new int[] {1, 5, 3}) {
            ch.basicPublish("", queue, new AMQP.BasicProperties.Builder().priority(p).build(), AmqpClient.bytes("" + p));
        }
        List<String> got = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            GetResponse r = ch.basicGet(queue, true);
            AmqpClient.expect(r != null, "get " + i + " found nothing");
            got.add(AmqpClient.text(r.getBody()));
        }
        AmqpClient.expect(got.equals(List.of("5", "3", "1")), "got priorities " + got + ", want [5, 3, 1]");
        ch.close();
    }

    /** What the exchange cannot route goes to its alternate, not back to a mandatory publisher (the
     * confirm comes after any basic.return would). */
    static void alternateExchange(Connection conn, String name) throws Exception {
        Channel ch = conn.createChannel();
        ch.confirmSelect();
        BlockingQueue<Return> returns = Features.returns(ch);
        String alternate = name + "-alternate";
        ch.exchangeDeclare(alternate, "fanout", false);
        ch.exchangeDeclare(name, "direct", false, false, Map.of("alternate-exchange", alternate));
        AmqpClient.declareTransient(ch, name);
        ch.queueBind(name, alternate, "");
        ch.basicPublish(name, "unbound", true, null, AmqpClient.bytes("caught"));
        ch.waitForConfirmsOrDie(AmqpClient.TIMEOUT_SECONDS * 1000);
        Return r = returns.poll();
        AmqpClient.expect(r == null, "returned " + (r == null ? "" : r.getReplyCode() + " " + r.getReplyText()));
        GetResponse got = ch.basicGet(name, true);
        AmqpClient.expect(got != null && AmqpClient.text(got.getBody()).equals("caught"), "got " + got);
        ch.exchangeDelete(name);
        ch.exchangeDelete(alternate);
        ch.close();
    }
}
