// Scenarios for features RabbitMQ users lean on beyond the protocol's core: direct reply-to,
// per-message TTL expiry dead-lettered, a length limit that rejects publishes (nacked), queue
// priorities and alternate exchanges.
package main

import (
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const replyTo = "amq.rabbitmq.reply-to"

// directReplyTo: an RPC through amq.rabbitmq.reply-to, no reply queue declared.
func directReplyTo(conn *amqp.Connection, queue string) error {
	server, err := conn.Channel()
	if err != nil {
		return err
	}
	defer server.Close()
	if _, err := server.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		return err
	}
	requests, err := server.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		return err
	}
	client, err := conn.Channel()
	if err != nil {
		return err
	}
	defer client.Close()
	replies, err := client.Consume(replyTo, "", true, false, false, false, nil)
	if err != nil {
		return err
	}
	request := amqp.Publishing{ReplyTo: replyTo, CorrelationId: "call-1", Body: []byte("ping")}
	if err := publish(client, "", queue, false, request); err != nil {
		return err
	}
	d, err := receive(requests, "the request")
	if err != nil {
		return err
	}
	if !strings.HasPrefix(d.ReplyTo, replyTo+".") {
		return fmt.Errorf("the request's reply_to is %q", d.ReplyTo)
	}
	reply := amqp.Publishing{CorrelationId: d.CorrelationId, Body: []byte("pong")}
	if err := publish(server, "", d.ReplyTo, false, reply); err != nil {
		return err
	}
	r, err := receive(replies, "the reply")
	if err == nil && (string(r.Body) != "pong" || r.CorrelationId != "call-1") {
		err = fmt.Errorf("reply %q correlation %q", r.Body, r.CorrelationId)
	}
	return err
}

// ttlExpired: a message with expiration "0" and no consumer expires at once into the dead-letter
// queue, its expiration moved to x-death's original-expiration.
func ttlExpired(conn *amqp.Connection, queue string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	dlq := queue + "-dead"
	if _, err := ch.QueueDeclare(dlq, false, true, false, false, nil); err != nil {
		return err
	}
	args := amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
	if _, err := ch.QueueDeclare(queue, false, true, false, false, args); err != nil {
		return err
	}
	if err := publish(ch, "", queue, false, amqp.Publishing{Expiration: "0", Body: []byte("late")}); err != nil {
		return err
	}
	dead, err := ch.Consume(dlq, "", true, false, false, false, nil)
	if err != nil {
		return err
	}
	d, err := receive(dead, "the expired message")
	if err != nil {
		return err
	}
	deaths, _ := d.Headers["x-death"].([]interface{})
	if len(deaths) != 1 || d.Expiration != "" {
		return fmt.Errorf("expired with expiration %q, x-death %v", d.Expiration, d.Headers["x-death"])
	}
	death, _ := deaths[0].(amqp.Table)
	if death["reason"] != "expired" || death["queue"] != queue || death["original-expiration"] != "0" {
		return fmt.Errorf("x-death %v", death)
	}
	return nil
}

// rejectPublish: a queue at x-max-length with x-overflow reject-publish nacks the publish beyond it.
func rejectPublish(conn *amqp.Connection, queue string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	confirmations := ch.NotifyPublish(make(chan amqp.Confirmation, 2))
	args := amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"}
	if _, err := ch.QueueDeclare(queue, false, true, false, false, args); err != nil {
		return err
	}
	for _, body := range []string{"kept", "refused"} {
		if err := publish(ch, "", queue, false, text(body)); err != nil {
			return err
		}
	}
	for i, want := range []bool{true, false} {
		select {
		case c := <-confirmations:
			if c.Ack != want || c.DeliveryTag != uint64(i+1) {
				return fmt.Errorf("confirmation %d: %+v, want ack=%v", i+1, c, want)
			}
		case <-time.After(timeout):
			return fmt.Errorf("no confirmation %d", i+1)
		}
	}
	return expectCount(ch, queue, 1, "after the refused publish")
}

// priority: a queue with x-max-priority hands out the highest priority first.
func priority(conn *amqp.Connection, queue string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(queue, false, true, false, false, amqp.Table{"x-max-priority": int32(5)}); err != nil {
		return err
	}
	for _, p := range []uint8{1, 5, 3} {
		if err := publish(ch, "", queue, false, amqp.Publishing{Priority: p, Body: []byte(fmt.Sprint(p))}); err != nil {
			return err
		}
	}
	var got []string
	for i := 0; i < 3; i++ {
		msg, ok, err := ch.Get(queue, true)
		if err != nil || !ok {
			return fmt.Errorf("get %d: ok=%v err=%v", i, ok, err)
		}
		got = append(got, string(msg.Body))
	}
	if strings.Join(got, ",") != "5,3,1" {
		return fmt.Errorf("got priorities %v, want 5,3,1", got)
	}
	return nil
}

// alternateExchange: what the exchange cannot route goes to its alternate, not back to a mandatory
// publisher (the confirm comes after any basic.return would).
func alternateExchange(conn *amqp.Connection, name string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	confirmations := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	alternate := name + "-alternate"
	if err := ch.ExchangeDeclare(alternate, "fanout", false, false, false, false, nil); err != nil {
		return err
	}
	defer ch.ExchangeDelete(alternate, false, false)
	args := amqp.Table{"alternate-exchange": alternate}
	if err := ch.ExchangeDeclare(name, "direct", false, false, false, false, args); err != nil {
		return err
	}
	defer ch.ExchangeDelete(name, false, false)
	if _, err := ch.QueueDeclare(name, false, true, false, false, nil); err != nil {
		return err
	}
	if err := ch.QueueBind(name, "", alternate, false, nil); err != nil {
		return err
	}
	if err := publish(ch, name, "unbound", true, text("caught")); err != nil {
		return err
	}
	select {
	case c := <-confirmations:
		if !c.Ack {
			return fmt.Errorf("nacked")
		}
	case <-time.After(timeout):
		return fmt.Errorf("no confirmation")
	}
	select {
	case r := <-returns:
		return fmt.Errorf("returned %d %s", r.ReplyCode, r.ReplyText)
	default:
	}
	msg, ok, err := ch.Get(name, true)
	if err != nil || !ok || string(msg.Body) != "caught" {
		return fmt.Errorf("get: ok=%v err=%v body=%q", ok, err, msg.Body)
	}
	return nil
}
