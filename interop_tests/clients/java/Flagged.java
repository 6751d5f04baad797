// The scenarios that need a broker started with flags, run by "AmqpClient AMQP_URL PREFIX flagged":
// TLS (AMQPS_URL and AMQPS_CA name the amqps listener and the CA that signed its certificate) and
// the disk alarm (the broker's data dir is on a small filesystem where writing DISK_FILLER_BYTES
// bytes to the file DISK_FILLER takes free space below --disk-free-limit; deleting it ends the alarm).
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.net.Socket;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

final class Flagged {
    private Flagged() {}

    static void runAll(String url, String prefix) {
        AmqpClient.run("tls", () -> overTls(System.getenv("AMQPS_URL"), System.getenv("AMQPS_CA"), prefix + "-tls"));
        AmqpClient.run("blocked", () -> blocked(url, prefix + "-blocked"));
    }

    /** Connect amqps trusting only the test's CA, checking the certificate names the host (this client
     * version has no switch for that: the socket's endpoint identification does it), then publish and
     * consume; trusting only the JDK's CAs, the handshake fails. */
    static void overTls(String url, String caFile, String queue) throws Exception {
        ConnectionFactory untrusting = AmqpClient.factory(url);
        untrusting.useSslProtocol(SSLContext.getDefault());
        untrusting.setSocketConfigurator(Flagged::checkHostname);
        try {
            untrusting.newConnection().close();
            AmqpClient.expect(false, "connected without trusting the test CA");
        } catch (javax.net.ssl.SSLHandshakeException expected) { // PKIX: unable to find a valid certification path
        }
        KeyStore trusted = KeyStore.getInstance(KeyStore.getDefaultType());
        trusted.load(null, null);
        try (InputStream pem = Files.newInputStream(Path.of(caFile))) {
            trusted.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(pem));
        }
        TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        trust.init(trusted);
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(null, trust.getTrustManagers(), null);
        ConnectionFactory factory = AmqpClient.factory(url); // amqps: trusts everything until told otherwise
        factory.useSslProtocol(context);
        factory.setSocketConfigurator(Flagged::checkHostname);
        Connection conn = factory.newConnection();
        AmqpClient.publishConsume(conn, queue);
        conn.close();
    }

    static void checkHostname(Socket socket) throws java.io.IOException {
        socket.setTcpNoDelay(true); // as the client's default configurator
        if (socket instanceof SSLSocket ssl) {
            SSLParameters parameters = ssl.getSSLParameters();
            parameters.setEndpointIdentificationAlgorithm("HTTPS");
            ssl.setSSLParameters(parameters);
        }
    }

    /** Filling the disk raises the alarm; the next publish gets connection.blocked "low on disk";
     * freeing the space sends connection.unblocked, and every publish is then confirmed. */
    static void blocked(String url, String queue) throws Exception {
        Path filler = Path.of(System.getenv("DISK_FILLER"));
        int size = Integer.parseInt(System.getenv("DISK_FILLER_BYTES"));
        Connection conn = AmqpClient.factory(url).newConnection();
        BlockingQueue<String> events = new LinkedBlockingQueue<>();
        conn.addBlockedListener(events::add, () -> events.add("unblocked"));
        Channel ch = conn.createChannel();
        ch.confirmSelect();
        AmqpClient.declareTransient(ch, queue);
        Files.write(filler, new byte[size]);
        try {
            int published = 0;
            String event = null;
            long deadline = System.currentTimeMillis() + AmqpClient.TIMEOUT_SECONDS * 1000;
            while (event == null) {
                AmqpClient.expect(System.currentTimeMillis() < deadline, "no connection.blocked");
                ch.basicPublish("", queue, null, AmqpClient.bytes("held"));
                published++;
                event = events.poll(100, TimeUnit.MILLISECONDS); // the broker measures free space every 0.1 s
            }
            AmqpClient.expect(event.equals("low on disk"), "blocked: " + event);
            Files.delete(filler);
            event = events.poll(AmqpClient.TIMEOUT_SECONDS, TimeUnit.SECONDS);
            AmqpClient.expect("unblocked".equals(event), "after freeing the disk: " + event);
            ch.waitForConfirmsOrDie(AmqpClient.TIMEOUT_SECONDS * 1000);
            AmqpClient.expectCount(ch, queue, published, "after unblocking");
        } finally {
            Files.deleteIfExists(filler);
        }
        conn.close();
    }
}
