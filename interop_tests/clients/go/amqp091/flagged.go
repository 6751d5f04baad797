// The scenarios that need a broker started with flags, run by "amqp091 AMQP_URL PREFIX flagged":
// TLS (AMQPS_URL and AMQPS_CA name the amqps listener and the CA that signed its certificate) and
// the disk alarm (the broker's data dir is on a small filesystem where writing DISK_FILLER_BYTES
// bytes to the file DISK_FILLER takes free space below --disk-free-limit; deleting it ends the alarm).
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func runFlagged(url, prefix string) {
	run("tls", func() error { return overTLS(os.Getenv("AMQPS_URL"), os.Getenv("AMQPS_CA"), prefix+"-tls") })
	run("blocked", func() error { return blocked(url, prefix+"-blocked") })
	fmt.Println("done")
}

// overTLS: connect amqps trusting only the test's CA, then publish and consume; trusting only the
// system's CAs, the handshake fails.
func overTLS(url, caFile string, queue string) error {
	if conn, err := amqp.DialTLS(url, &tls.Config{}); err == nil {
		conn.Close()
		return fmt.Errorf("connected without trusting the test CA")
	} else if !strings.Contains(err.Error(), "certificate") {
		return fmt.Errorf("without the test CA: %v, want a certificate error", err)
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no certificate in %s", caFile)
	}
	conn, err := amqp.DialTLS(url, &tls.Config{RootCAs: roots})
	if err != nil {
		return err
	}
	defer conn.Close()
	if !conn.ConnectionState().HandshakeComplete {
		return fmt.Errorf("no TLS handshake")
	}
	if err := publishConsume(conn, queue); err != nil {
		return err
	}
	return conn.Close()
}

// blocked: filling the disk raises the alarm; the next publish gets connection.blocked "low on
// disk"; freeing the space sends connection.unblocked, and every publish is then confirmed.
func blocked(url, queue string) error {
	filler := os.Getenv("DISK_FILLER")
	size, err := strconv.Atoi(os.Getenv("DISK_FILLER_BYTES"))
	if err != nil {
		return fmt.Errorf("DISK_FILLER_BYTES: %v", err)
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	events := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	confirmations := ch.NotifyPublish(make(chan amqp.Confirmation, 1000))
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		return err
	}
	if err := os.WriteFile(filler, make([]byte, size), 0o600); err != nil {
		return err
	}
	defer os.Remove(filler)
	published := 0
	var event amqp.Blocking
	deadline := time.Now().Add(timeout)
	for waiting := true; waiting; {
		if time.Now().After(deadline) {
			return fmt.Errorf("no connection.blocked after %d publishes", published)
		}
		if err := publish(ch, "", queue, false, text("held")); err != nil {
			return err
		}
		published++
		select {
		case event = <-events:
			waiting = false
		case <-time.After(100 * time.Millisecond): // the broker measures free space every 0.1 s
		}
	}
	if !event.Active || event.Reason != "low on disk" {
		return fmt.Errorf("blocked event %+v", event)
	}
	if err := os.Remove(filler); err != nil {
		return err
	}
	select {
	case event = <-events:
		if event.Active {
			return fmt.Errorf("second event %+v, want unblocked", event)
		}
	case <-time.After(timeout):
		return fmt.Errorf("no connection.unblocked")
	}
	for i := 1; i <= published; i++ {
		select {
		case c := <-confirmations:
			if !c.Ack {
				return fmt.Errorf("publish %d nacked", c.DeliveryTag)
			}
		case <-time.After(timeout):
			return fmt.Errorf("no confirmation %d of %d", i, published)
		}
	}
	if err := expectCount(ch, queue, published, "after unblocking"); err != nil {
		return err
	}
	return conn.Close()
}
