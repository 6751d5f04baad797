// Delayed messages, run by "AmqpClient AMQP_URL PREFIX delayed": declare an x-delayed-message
// exchange (x-delayed-type direct) and a queue bound to it, publish with confirms messages whose
// x-delay headers are out of publish order, and consume them. Prints the lines of
// clients/go/delayed and clients/node/delayed.js (interop_tests/test_delayed_other_languages.py):
// "ok declare", "ok publish", "ok order" (delay order), "ok not-early" (none before its publish
// time plus its delay), one "lateness MS" line per message, for information only.
import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.Delivery;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

final class Delayed {
    static final int[] DELAYS = {900, 300, 600, 100};

    private Delayed() {}

    static void runAll(String url, String prefix) throws Exception {
        Connection[] conn = new Connection[1];
        Channel[] ch = new Channel[1];
        AmqpClient.Inbox[] inbox = new AmqpClient.Inbox[1];
        String exchange = prefix + "-dx";
        String queue = prefix + "-q";
        AmqpClient.run("declare", () -> {
            conn[0] = AmqpClient.factory(url).newConnection();
            ch[0] = conn[0].createChannel();
            ch[0].exchangeDeclare(exchange, "x-delayed-message", false, false, Map.of("x-delayed-type", "direct"));
            ch[0].queueDeclare(queue, false, false, true, null);
            ch[0].queueBind(queue, exchange, "k");
            inbox[0] = new AmqpClient.Inbox(ch[0], queue, true);
        });
        Map<String, Long> due = new HashMap<>(); // nanoTime each message is due: publish time + delay
        AmqpClient.run("publish", () -> publish(ch[0], exchange, due));
        List<String> got = new ArrayList<>();
        List<Long> lateness = new ArrayList<>(); // ns after it was due
        AmqpClient.run("order", () -> {
            for (int i = 0; i < DELAYS.length; i++) {
                Delivery d = inbox[0].next("message " + (got.size() + 1) + " of " + DELAYS.length);
                lateness.add(System.nanoTime() - due.get(AmqpClient.text(d)));
                got.add(AmqpClient.text(d));
            }
            List<String> want = List.of("delay 100", "delay 300", "delay 600", "delay 900");
            AmqpClient.expect(got.equals(want), "got " + got + ", want " + want);
        });
        AmqpClient.run("not-early", () -> {
            for (int i = 0; i < got.size(); i++) {
                AmqpClient.expect(lateness.get(i) >= 0, got.get(i) + " arrived " + -lateness.get(i) / 1e6 + " ms early");
            }
        });
        for (long ns : lateness) {
            System.out.printf("lateness %.1f%n", ns / 1e6);
        }
        ch[0].exchangeDelete(exchange);
        conn[0].close();
    }

    static void publish(Channel ch, String exchange, Map<String, Long> due) throws Exception {
        ch.confirmSelect();
        for (int delay : DELAYS) {
            String body = "delay " + delay;
            due.put(body, System.nanoTime() + delay * 1_000_000L);
            AMQP.BasicProperties props =
                    new AMQP.BasicProperties.Builder().deliveryMode(2).headers(Map.of("x-delay", delay)).build();
            ch.basicPublish(exchange, "k", props, AmqpClient.bytes(body));
            ch.waitForConfirmsOrDie(AmqpClient.TIMEOUT_SECONDS * 1000);
        }
    }
}
