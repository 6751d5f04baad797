// Command amqp091 drives the broker with the Go client github.com/rabbitmq/amqp091-go
// (Debian's golang-github-rabbitmq-amqp091-go-dev, built in GOPATH mode: no module download).
//
// Usage: amqp091 AMQP_URL PREFIX [flagged]. It runs each scenario in turn and prints "ok NAME" for each,
// then "done"; the first failure prints "FAIL NAME: error" and exits 1. Every wait is bounded.
// interop_tests/test_other_languages.py runs it and asserts on these lines. With "flagged" it runs
// the scenarios that need a broker started with flags (TLS, a disk alarm): see flagged.go.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const timeout = 10 * time.Second

func main() {
	if len(os.Args) < 3 || len(os.Args) > 4 {
		fmt.Println("usage: amqp091 AMQP_URL PREFIX [flagged]")
		os.Exit(2)
	}
	url, prefix := os.Args[1], os.Args[2]
	if len(os.Args) == 4 && os.Args[3] == "flagged" {
		runFlagged(url, prefix)
		return
	}
	conn, err := amqp.DialConfig(url, amqp.Config{Heartbeat: 10 * time.Second, Dial: amqp.DefaultDial(timeout)})
	check("connect", err)
	defer conn.Close()
	timeouts, err := startConsumerTimeouts(conn, prefix+"-timeout")
	check("connect", err)
	idle, err := openIdle(url)
	check("connect", err)
	fmt.Println("ok connect")
	run("publish-consume", func() error { return publishConsume(conn, prefix+"-pc") })
	run("get", func() error { return get(conn, prefix+"-get") })
	run("confirms", func() error { return confirms(conn, prefix+"-confirms") })
	run("crossing-close", func() error { return crossingClose(conn, prefix+"-cross") })
	run("transactions", func() error { return transactions(conn, prefix+"-tx") })
	run("return", func() error { return mandatoryReturn(conn, prefix+"-nowhere") })
	run("consumer-cancel", func() error { return consumerCancel(conn, prefix+"-cancel") })
	run("qos", func() error { return qos(conn, prefix+"-qos") })
	run("nack-requeue", func() error { return nackRequeue(conn, prefix+"-nack") })
	run("dead-letter", func() error { return deadLetter(conn, prefix+"-dl") })
	run("exchange-binding", func() error { return exchangeBinding(conn, prefix+"-e2e") })
	run("headers-exchange", func() error { return headersExchange(conn, prefix+"-headers") })
	run("large-message", func() error { return largeMessage(conn, prefix+"-large") })
	run("channel-errors", func() error { return channelErrors(conn, prefix+"-errors") })
	run("direct-reply-to", func() error { return directReplyTo(conn, prefix+"-rpc") })
	run("ttl-expired", func() error { return ttlExpired(conn, prefix+"-ttl") })
	run("reject-publish", func() error { return rejectPublish(conn, prefix+"-full") })
	run("priority", func() error { return priority(conn, prefix+"-priority") })
	run("alternate-exchange", func() error { return alternateExchange(conn, prefix+"-ae") })
	run("heartbeat", func() error { return idle.check(prefix + "-hb") })
	run("update-secret", func() error { return updateSecret(conn, prefix+"-secret") })
	run("consumer-timeout", timeouts.check)
	check("close", conn.Close())
	fmt.Println("ok close")
	fmt.Println("done")
}

func check(name string, err error) {
	if err != nil {
		fmt.Printf("FAIL %s: %v\n", name, err)
		os.Exit(1)
	}
}

func run(name string, scenario func() error) {
	check(name, scenario())
	fmt.Println("ok " + name)
}

func publishConsume(conn *amqp.Connection, queue string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		return err
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for i := 0; i < 3; i++ {
		body := []byte(fmt.Sprintf("message %d", i))
		msg := amqp.Publishing{Body: body, ContentType: "text/plain", Headers: amqp.Table{"n": int32(i)}}
		if err := ch.PublishWithContext(ctx, "", queue, false, false, msg); err != nil {
			return err
		}
		select {
		case d := <-deliveries:
			if !bytes.Equal(d.Body, body) || d.ContentType != "text/plain" || d.Headers["n"] != int32(i) {
				return fmt.Errorf("got %q %q %v, want %q", d.Body, d.ContentType, d.Headers, body)
			}
			if err := d.Ack(false); err != nil {
				return err
			}
		case <-time.After(timeout):
			return fmt.Errorf("no delivery of message %d", i)
		}
	}
	return nil
}

func get(conn *amqp.Connection, queue string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		return err
	}
	if _, ok, err := ch.Get(queue, true); err != nil || ok {
		return fmt.Errorf("get on an empty queue: ok=%v err=%v", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{Body: []byte("got")}); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		msg, ok, err := ch.Get(queue, true)
		if err != nil {
			return err
		}
		if ok {
			if string(msg.Body) != "got" {
				return fmt.Errorf("got %q", msg.Body)
			}
			_, err = ch.QueueDelete(queue, false, false, false)
			return err
		}
	}
	return fmt.Errorf("the message never reached the queue")
}

func confirms(conn *amqp.Connection, queue string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	acks := ch.NotifyPublish(make(chan amqp.Confirmation, 100))
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	const count = 50
	for i := 0; i < count; i++ {
		if err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{Body: []byte("c")}); err != nil {
			return err
		}
	}
	for i := uint64(1); i <= count; i++ {
		select {
		case c := <-acks:
			if !c.Ack || c.DeliveryTag != i {
				return fmt.Errorf("confirmation %d: %+v", i, c)
			}
		case <-time.After(timeout):
			return fmt.Errorf("no confirmation %d", i)
		}
	}
	q, err := ch.QueueDeclarePassive(queue, false, true, false, false, nil)
	if err != nil {
		return err
	}
	if q.Messages != count {
		return fmt.Errorf("%d messages in the queue, want %d", q.Messages, count)
	}
	_, err = ch.QueueDelete(queue, false, false, false)
	return err
}

// crossingClose publishes to a missing exchange and closes the channel at once, so the client's
// channel.close crosses the broker's channel.close (404). The connection must stay usable.
// Close returns on the broker's close, before the broker's close-ok for ours arrives; a round
// trip on another channel lets that close-ok arrive before the next channel takes the same id
// (else the client itself fails "unexpected command received", on RabbitMQ too).
func crossingClose(conn *amqp.Connection, queue string) error {
	control, err := conn.Channel()
	if err != nil {
		return err
	}
	defer control.Close()
	for i := 0; i < 20; i++ {
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("round %d: %v", i, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		_ = ch.PublishWithContext(ctx, queue+"-missing-exchange", "k", false, false, amqp.Publishing{Body: []byte("x")})
		cancel()
		_ = ch.Close() // either close-ok or the broker's 404: both end the channel
		if _, err := control.QueueDeclare(queue, false, true, false, false, nil); err != nil {
			return fmt.Errorf("round %d: %v", i, err)
		}
	}
	if conn.IsClosed() {
		return fmt.Errorf("the connection was closed")
	}
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = ch.QueueDeclarePassive(queue, false, true, false, false, nil)
	return err
}
