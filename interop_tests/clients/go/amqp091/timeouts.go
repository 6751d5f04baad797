// Consumer timeouts and connection.update-secret. The timeout scenario starts right after connect
// and is checked near the end, so its wait overlaps the other scenarios instead of adding to them.
package main

import (
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// consumerTimeoutMs is the x-consumer-timeout the scenario sets on queues and on a basic.consume.
const consumerTimeoutMs = 1000

// heldDelivery is one channel that consumed a message and never acks it.
type heldDelivery struct {
	queue  string
	number int // the channel's number: amqp091-go does not expose it, so the order it was opened in
	closed chan *amqp.Error
}

type consumerTimeouts struct {
	conn *amqp.Connection
	held []heldDelivery
}

// startConsumerTimeouts opens the connection's first three channels (numbers 1 to 3: amqp091-go hands
// out the lowest free number on a new connection) and leaves one delivery unacked on each: consumed
// from a queue declared with x-consumer-timeout, consumed through a basic.consume with
// x-consumer-timeout, and taken by basic.get from a queue with x-consumer-timeout.
func startConsumerTimeouts(conn *amqp.Connection, prefix string) (*consumerTimeouts, error) {
	timeouts := &consumerTimeouts{conn: conn}
	// a 32-bit int on the queue, a 64-bit one on the consumer: RabbitMQ takes any integer type
	onQueue := amqp.Table{"x-consumer-timeout": int32(consumerTimeoutMs)}
	onConsumer := amqp.Table{"x-consumer-timeout": int64(consumerTimeoutMs)}
	holds := []struct {
		queue, consume amqp.Table
		get            bool
	}{{onQueue, nil, false}, {nil, onConsumer, false}, {onQueue, nil, true}}
	for number, args := range holds {
		queue := fmt.Sprintf("%s-%d", prefix, number+1)
		if err := timeouts.hold(queue, number+1, args.queue, args.consume, args.get); err != nil {
			return nil, err
		}
	}
	return timeouts, nil
}

// hold takes the message by basic.consume, or with get by basic.get (its get-ok awaits an ack too).
func (timeouts *consumerTimeouts) hold(queue string, number int, queueArgs, consumeArgs amqp.Table, get bool) error {
	ch, err := timeouts.conn.Channel()
	if err != nil {
		return err
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1)) // buffered: the client's reader must not block on it
	// exclusive, not auto-delete: the timeout's channel.close cancels the consumer, the queue stays
	if _, err := ch.QueueDeclare(queue, false, false, true, false, queueArgs); err != nil {
		return err
	}
	if err := publish(ch, "", queue, false, text("held")); err != nil {
		return err
	}
	if err := takeWithoutAck(ch, queue, consumeArgs, get); err != nil {
		return err
	}
	timeouts.held = append(timeouts.held, heldDelivery{queue: queue, number: number, closed: closed})
	return nil
}

func takeWithoutAck(ch *amqp.Channel, queue string, consumeArgs amqp.Table, get bool) error {
	if get {
		for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
			if _, ok, err := ch.Get(queue, false); err != nil || ok {
				return err
			}
		}
		return fmt.Errorf("basic.get found no message in %s", queue)
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, consumeArgs)
	if err != nil {
		return err
	}
	_, err = receive(deliveries, "the held message")
	return err
}

// check: each held channel was closed with RabbitMQ's 406 and its message comes again, redelivered,
// to a consumer on another channel.
func (timeouts *consumerTimeouts) check() error {
	other, err := timeouts.conn.Channel()
	if err != nil {
		return err
	}
	defer other.Close()
	for _, held := range timeouts.held {
		var reason *amqp.Error
		select {
		case reason = <-held.closed:
		case <-time.After(timeout):
			return fmt.Errorf("channel %d was not closed", held.number)
		}
		want := fmt.Sprintf("PRECONDITION_FAILED - delivery acknowledgement on channel %d timed out. "+
			"Timeout value used: %d ms. This timeout value can be configured, see consumers doc guide to learn more",
			held.number, consumerTimeoutMs)
		if reason == nil || reason.Code != 406 || reason.Reason != want {
			return fmt.Errorf("channel %d closed with %v, want 406 %q", held.number, reason, want)
		}
		deliveries, err := other.Consume(held.queue, "", false, false, false, false, nil)
		if err != nil {
			return err
		}
		d, err := receive(deliveries, "the requeued message")
		if err != nil {
			return err
		}
		if string(d.Body) != "held" || !d.Redelivered {
			return fmt.Errorf("got %q redelivered=%v, want \"held\" redelivered", d.Body, d.Redelivered)
		}
		if err := d.Ack(false); err != nil {
			return err
		}
	}
	return nil
}

// updateSecret: connection.update-secret is answered with update-secret-ok (RabbitMQ accepts any new
// secret of an internal user), and a channel opened before it and one opened after both work on.
func updateSecret(conn *amqp.Connection, queue string) error {
	before, err := conn.Channel()
	if err != nil {
		return err
	}
	defer before.Close()
	if _, err := before.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		return err
	}
	for _, secret := range []string{"guest", "a refreshed token"} {
		if err := conn.UpdateSecret(secret, "token refresh"); err != nil {
			return err
		}
	}
	if err := publish(before, "", queue, false, text("after update-secret")); err != nil {
		return err
	}
	after, err := conn.Channel()
	if err != nil {
		return err
	}
	defer after.Close()
	deliveries, err := after.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		return err
	}
	d, err := receive(deliveries, "the message published after update-secret")
	if err == nil && string(d.Body) != "after update-secret" {
		err = fmt.Errorf("got %q", d.Body)
	}
	return err
}
