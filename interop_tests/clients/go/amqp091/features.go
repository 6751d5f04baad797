// The scenarios beyond the basics: transactions, mandatory returns, consumer cancel notifications,
// prefetch, nack with requeue, dead-lettering, exchange-to-exchange bindings, headers exchanges and
// heartbeats. Each checks what the client observes, never how fast.
package main

import (
	"context"
	"fmt"
	"reflect"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func publish(ch *amqp.Channel, exchange, key string, mandatory bool, msg amqp.Publishing) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return ch.PublishWithContext(ctx, exchange, key, mandatory, false, msg)
}

func text(body string) amqp.Publishing { return amqp.Publishing{Body: []byte(body)} }

func receive(deliveries <-chan amqp.Delivery, what string) (amqp.Delivery, error) {
	select {
	case d, ok := <-deliveries:
		if !ok {
			return d, fmt.Errorf("the consumer ended before %s", what)
		}
		return d, nil
	case <-time.After(timeout):
		return amqp.Delivery{}, fmt.Errorf("no delivery of %s", what)
	}
}

func returned(returns <-chan amqp.Return, what string) (amqp.Return, error) {
	select {
	case r := <-returns:
		return r, nil
	case <-time.After(timeout):
		return amqp.Return{}, fmt.Errorf("no basic.return of %s", what)
	}
}

// readyCount is the queue's ready messages, as a passive queue.declare reports them.
func readyCount(ch *amqp.Channel, queue string) (int, error) {
	q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	return q.Messages, err
}

func expectCount(ch *amqp.Channel, queue string, want int, when string) error {
	n, err := readyCount(ch, queue)
	if err == nil && n != want {
		err = fmt.Errorf("%s: %d messages in %s, want %d", when, n, queue, want)
	}
	return err
}

// transactions: a committed publish is delivered, a rolled-back one is not; an ack rolled back
// leaves the message unacked (requeued when the channel closes), an ack committed removes it.
func transactions(conn *amqp.Connection, queue string) error {
	other, err := conn.Channel()
	if err != nil {
		return err
	}
	defer other.Close()
	if _, err := other.QueueDeclare(queue, false, false, false, false, nil); err != nil {
		return err
	}
	defer other.QueueDelete(queue, false, false, false)
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Tx(); err != nil {
		return err
	}
	for _, step := range []struct {
		body string
		end  func() error
	}{{"committed", ch.TxCommit}, {"rolled back", ch.TxRollback}} {
		if err := publish(ch, "", queue, false, text(step.body)); err != nil {
			return err
		}
		if err := step.end(); err != nil {
			return err
		}
	}
	if err := expectCount(other, queue, 1, "after commit and rollback"); err != nil {
		return err
	}
	msg, ok, err := ch.Get(queue, false)
	if err != nil || !ok || string(msg.Body) != "committed" {
		return fmt.Errorf("get: ok=%v err=%v body=%q", ok, err, msg.Body)
	}
	if err := msg.Ack(false); err != nil {
		return err
	}
	if err := ch.TxRollback(); err != nil {
		return err
	}
	if err := ch.Close(); err != nil {
		return err
	}
	if err := expectCount(other, queue, 1, "after a rolled-back ack and close"); err != nil {
		return err
	}
	ch, err = conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Tx(); err != nil {
		return err
	}
	msg, ok, err = ch.Get(queue, false)
	if err != nil || !ok || !msg.Redelivered {
		return fmt.Errorf("second get: ok=%v err=%v redelivered=%v", ok, err, msg.Redelivered)
	}
	if err := msg.Ack(false); err != nil {
		return err
	}
	if err := ch.TxCommit(); err != nil {
		return err
	}
	if err := ch.Close(); err != nil {
		return err
	}
	return expectCount(other, queue, 0, "after a committed ack")
}

// mandatoryReturn: a mandatory publish nothing is bound for comes back as basic.return 312 NO_ROUTE.
func mandatoryReturn(conn *amqp.Connection, key string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	if err := publish(ch, "amq.direct", key, true, text("back")); err != nil {
		return err
	}
	r, err := returned(returns, "the unroutable message")
	if err != nil {
		return err
	}
	if r.ReplyCode != 312 || r.ReplyText != "NO_ROUTE" || r.Exchange != "amq.direct" || r.RoutingKey != key ||
		string(r.Body) != "back" {
		return fmt.Errorf("returned %d %q %q %q %q", r.ReplyCode, r.ReplyText, r.Exchange, r.RoutingKey, r.Body)
	}
	return nil
}

// consumerCancel: deleting the queue under a consumer sends basic.cancel (the client announced
// consumer_cancel_notify); the channel stays open.
func consumerCancel(conn *amqp.Connection, queue string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(queue, false, false, false, false, nil); err != nil {
		return err
	}
	cancels := ch.NotifyCancel(make(chan string, 1))
	if _, err := ch.Consume(queue, "the-consumer", false, false, false, false, nil); err != nil {
		return err
	}
	other, err := conn.Channel()
	if err != nil {
		return err
	}
	defer other.Close()
	if _, err := other.QueueDelete(queue, false, false, false); err != nil {
		return err
	}
	select {
	case tag := <-cancels:
		if tag != "the-consumer" {
			return fmt.Errorf("basic.cancel for %q", tag)
		}
	case <-time.After(timeout):
		return fmt.Errorf("no basic.cancel")
	}
	_, err = ch.QueueDeclare(queue+"-after", false, true, false, false, nil)
	return err
}

// qos: with prefetch 2 the broker holds the rest until an ack frees a slot.
func qos(conn *amqp.Connection, queue string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		return err
	}
	if err := ch.Qos(2, 0, false); err != nil {
		return err
	}
	for i := 0; i < 5; i++ {
		if err := publish(ch, "", queue, false, text(fmt.Sprint(i))); err != nil {
			return err
		}
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	var held []amqp.Delivery
	for i := 0; i < 2; i++ {
		d, err := receive(deliveries, fmt.Sprintf("message %d", i))
		if err != nil {
			return err
		}
		held = append(held, d)
	}
	if err := expectCount(ch, queue, 3, "with 2 unacked under prefetch 2"); err != nil {
		return err
	}
	for i := 2; i < 5; i++ {
		if err := held[0].Ack(false); err != nil {
			return err
		}
		d, err := receive(deliveries, fmt.Sprintf("message %d", i))
		if err != nil {
			return err
		}
		if string(d.Body) != fmt.Sprint(i) {
			return fmt.Errorf("got %q, want %d", d.Body, i)
		}
		held = append(held[1:], d)
	}
	return held[1].Ack(true)
}

// nackRequeue: a nacked message comes back with redelivered set.
func nackRequeue(conn *amqp.Connection, queue string) error {
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
	if err := publish(ch, "", queue, false, text("again")); err != nil {
		return err
	}
	first, err := receive(deliveries, "the message")
	if err != nil {
		return err
	}
	if first.Redelivered {
		return fmt.Errorf("the first delivery is marked redelivered")
	}
	if err := first.Nack(false, true); err != nil {
		return err
	}
	second, err := receive(deliveries, "the requeued message")
	if err != nil {
		return err
	}
	if !second.Redelivered || string(second.Body) != "again" {
		return fmt.Errorf("redelivery: redelivered=%v body=%q", second.Redelivered, second.Body)
	}
	return second.Ack(false)
}

// typedHeaders has a value of each field type amqp091-go writes (bool, B, b, s, I, l, f, d, D, S,
// A, T, F, x, V): they must arrive as sent, also after dead-lettering adds x-death to the table.
func typedHeaders() amqp.Table {
	return amqp.Table{
		"bool": true, "uint8": byte(200), "int8": int8(-3), "int16": int16(-300), "int32": int32(-70000),
		"int64": int64(-5000000000), "float32": float32(1.5), "float64": 2.25,
		"decimal": amqp.Decimal{Scale: 2, Value: 12345}, "string": "snow ☃",
		"array": []interface{}{int32(1), "two", []interface{}{"three"}}, "time": time.Unix(1700000000, 0),
		"table": amqp.Table{"nested": amqp.Table{"deep": "yes"}}, "bytes": []byte{0, 1, 254}, "void": nil,
	}
}

func sameHeaders(got amqp.Table, want amqp.Table) error {
	for key, value := range want {
		if !reflect.DeepEqual(got[key], value) {
			return fmt.Errorf("header %s: got %#v, want %#v", key, got[key], value)
		}
	}
	return nil
}

// deadLetter: a rejected message moves to the dead-letter queue with an x-death header.
func deadLetter(conn *amqp.Connection, queue string) error {
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
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	if err := publish(ch, "", queue, false, amqp.Publishing{Headers: typedHeaders(), Body: []byte("dead")}); err != nil {
		return err
	}
	d, err := receive(deliveries, "the message")
	if err != nil {
		return err
	}
	if err := sameHeaders(d.Headers, typedHeaders()); err != nil {
		return err
	}
	if err := d.Reject(false); err != nil {
		return err
	}
	dead, err := ch.Consume(dlq, "", true, false, false, false, nil)
	if err != nil {
		return err
	}
	d, err = receive(dead, "the dead-lettered message")
	if err != nil {
		return err
	}
	deaths, _ := d.Headers["x-death"].([]interface{})
	if string(d.Body) != "dead" || len(deaths) != 1 {
		return fmt.Errorf("dead-lettered %q with x-death %v", d.Body, d.Headers["x-death"])
	}
	death, _ := deaths[0].(amqp.Table)
	if death["reason"] != "rejected" || death["queue"] != queue || death["count"] != int64(1) {
		return fmt.Errorf("x-death %v", death)
	}
	return sameHeaders(d.Headers, typedHeaders())
}

// exchangeBinding: a topic exchange bound to a fanout one forwards what its pattern matches.
func exchangeBinding(conn *amqp.Connection, name string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	source, destination := name+"-source", name+"-destination"
	if err := ch.ExchangeDeclare(source, "topic", false, false, false, false, nil); err != nil {
		return err
	}
	defer ch.ExchangeDelete(source, false, false)
	if err := ch.ExchangeDeclare(destination, "fanout", false, false, false, false, nil); err != nil {
		return err
	}
	defer ch.ExchangeDelete(destination, false, false)
	if err := ch.ExchangeBind(destination, "a.*", source, false, nil); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(name, false, true, false, false, nil); err != nil {
		return err
	}
	if err := ch.QueueBind(name, "", destination, false, nil); err != nil {
		return err
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	if err := publish(ch, source, "a.b", true, text("matched")); err != nil {
		return err
	}
	if err := publish(ch, source, "b.a", true, text("unmatched")); err != nil {
		return err
	}
	if r, err := returned(returns, "the unmatched message"); err != nil || string(r.Body) != "unmatched" {
		return fmt.Errorf("return: %q %v", r.Body, err)
	}
	msg, ok, err := ch.Get(name, true)
	if err != nil || !ok || string(msg.Body) != "matched" || msg.Exchange != source || msg.RoutingKey != "a.b" {
		return fmt.Errorf("get: ok=%v err=%v %q from %q %q", ok, err, msg.Body, msg.Exchange, msg.RoutingKey)
	}
	return expectCount(ch, name, 0, "after the matched message")
}

// headersExchange: x-match all and any bindings route on message headers.
func headersExchange(conn *amqp.Connection, name string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	confirmations := ch.NotifyPublish(make(chan amqp.Confirmation, 3))
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	if err := ch.ExchangeDeclare(name, "headers", false, false, false, false, nil); err != nil {
		return err
	}
	defer ch.ExchangeDelete(name, false, false)
	bindings := map[string]amqp.Table{
		name + "-all": {"x-match": "all", "format": "pdf", "size": int32(2)},
		name + "-any": {"x-match": "any", "format": "pdf", "type": "report"},
	}
	for queue, args := range bindings {
		if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
			return err
		}
		if err := ch.QueueBind(queue, "", name, false, args); err != nil {
			return err
		}
	}
	for _, headers := range []amqp.Table{
		{"format": "pdf", "size": int32(2)}, {"format": "pdf", "size": int32(3)}, {"type": "letter"},
	} {
		if err := publish(ch, name, "", true, amqp.Publishing{Headers: headers, Body: []byte("h")}); err != nil {
			return err
		}
	}
	if r, err := returned(returns, "the message no binding matches"); err != nil || r.Headers["type"] != "letter" {
		return fmt.Errorf("return: %v %v", r.Headers, err)
	}
	for i := 0; i < 3; i++ {
		select {
		case <-confirmations:
		case <-time.After(timeout):
			return fmt.Errorf("no confirmation %d", i+1)
		}
	}
	if err := expectCount(ch, name+"-all", 1, "x-match all"); err != nil {
		return err
	}
	return expectCount(ch, name+"-any", 2, "x-match any")
}

// idleConnection: a second connection that negotiated a 1 s heartbeat and stays idle while the
// other scenarios run. amqp091-go closes a connection that reads nothing for 3 heartbeat intervals,
// so still being open after 4 s means the broker's heartbeats arrived.
type idleConnection struct {
	conn   *amqp.Connection
	opened time.Time
	closed chan *amqp.Error
}

const idleFor = 4 * time.Second

func openIdle(url string) (*idleConnection, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Heartbeat: time.Second, Dial: amqp.DefaultDial(timeout)})
	if err != nil {
		return nil, err
	}
	return &idleConnection{conn: conn, opened: time.Now(), closed: conn.NotifyClose(make(chan *amqp.Error, 1))}, nil
}

func (idle *idleConnection) check(queue string) error {
	defer idle.conn.Close()
	if idle.conn.Config.Heartbeat != time.Second {
		return fmt.Errorf("negotiated heartbeat %v, want 1s", idle.conn.Config.Heartbeat)
	}
	time.Sleep(time.Until(idle.opened.Add(idleFor)))
	select {
	case err := <-idle.closed:
		return fmt.Errorf("the idle connection closed: %v", err)
	default:
	}
	ch, err := idle.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = ch.QueueDeclare(queue, false, true, false, false, nil)
	return err
}

// largeMessage: a body of several frames (at the frame_max this client negotiated) arrives whole.
func largeMessage(conn *amqp.Connection, queue string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		return err
	}
	body := make([]byte, 1<<20+7)
	for i := range body {
		body[i] = byte(i * 7)
	}
	if err := publish(ch, "", queue, false, amqp.Publishing{Body: body}); err != nil {
		return err
	}
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		return err
	}
	d, err := receive(deliveries, "the large message")
	if err == nil && !reflect.DeepEqual(d.Body, body) {
		err = fmt.Errorf("got %d bytes, want %d (frame_max %d)", len(d.Body), len(body), conn.Config.FrameSize)
	}
	return err
}

// channelErrors: the broker's channel.close codes and texts, as RabbitMQ words them; each closes
// only its channel.
func channelErrors(conn *amqp.Connection, queue string) error {
	expectClose := func(what string, code int, text string, call func(ch *amqp.Channel) error) error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		defer ch.Close()
		err = call(ch)
		amqpErr, ok := err.(*amqp.Error)
		if !ok || amqpErr.Code != code || amqpErr.Reason != text {
			return fmt.Errorf("%s: got %v, want %d %s", what, err, code, text)
		}
		return nil
	}
	if err := expectClose("passive declare", 404, fmt.Sprintf("NOT_FOUND - no queue '%s' in vhost '/'", queue),
		func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
			return err
		}); err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		return err
	}
	inequivalent := fmt.Sprintf("PRECONDITION_FAILED - inequivalent arg 'durable' for queue '%s' in vhost '/': "+
		"received 'true' but current is 'false'", queue)
	if err := expectClose("inequivalent declare", 406, inequivalent, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(queue, true, true, false, false, nil)
		return err
	}); err != nil {
		return err
	}
	if err := expectClose("publish to a missing exchange", 404,
		fmt.Sprintf("NOT_FOUND - no exchange '%s-missing' in vhost '/'", queue), func(ch *amqp.Channel) error {
			closed := ch.NotifyClose(make(chan *amqp.Error, 1))
			if err := publish(ch, queue+"-missing", "k", false, text("x")); err != nil {
				return err
			}
			select {
			case err := <-closed:
				return err
			case <-time.After(timeout):
				return fmt.Errorf("the channel stayed open")
			}
		}); err != nil {
		return err
	}
	_, err = ch.QueueDeclarePassive(queue, false, true, false, false, nil)
	return err
}
