// Command delayed checks delayed messages (exchange type x-delayed-message, header x-delay) with the Go
// client github.com/rabbitmq/amqp091-go (Debian's golang-github-rabbitmq-amqp091-go-dev, GOPATH mode).
//
// Usage: delayed AMQP_URL PREFIX. It declares a delayed direct exchange and a queue bound to it,
// publishes with confirms messages whose delays are out of publish order, and consumes them. It
// prints "ok declare", "ok publish", "ok order" (they arrive in delay order), "ok not-early" (none
// arrives before its publish time plus its delay), one "lateness MS" line per message, then "done";
// the first failure prints "FAIL NAME: error" and exits 1. Every wait is bounded.
// interop_tests/test_delayed_other_languages.py runs it and asserts on these lines.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const timeout = 10 * time.Second

var delays = []int32{900, 300, 600, 100}

func main() {
	if len(os.Args) != 3 {
		fmt.Println("usage: delayed AMQP_URL PREFIX")
		os.Exit(2)
	}
	url, prefix := os.Args[1], os.Args[2]
	conn, err := amqp.DialConfig(url, amqp.Config{Heartbeat: 10 * time.Second, Dial: amqp.DefaultDial(timeout)})
	check("connect", err)
	defer conn.Close()
	ch, err := conn.Channel()
	check("channel", err)
	exchange, queue := prefix+"-dx", prefix+"-q"
	check("declare", declare(ch, exchange, queue))
	fmt.Println("ok declare")
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	check("consume", err)
	due, err := publish(ch, exchange)
	check("publish", err)
	fmt.Println("ok publish")
	got, late, err := receive(deliveries, due)
	check("receive", err)
	want := []string{"delay 100", "delay 300", "delay 600", "delay 900"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		check("order", fmt.Errorf("got %v, want %v", got, want))
	}
	fmt.Println("ok order")
	for i, lateness := range late {
		if lateness < 0 {
			check("not-early", fmt.Errorf("%s arrived %d ms early", got[i], -lateness.Milliseconds()))
		}
	}
	fmt.Println("ok not-early")
	for _, lateness := range late {
		fmt.Printf("lateness %.1f\n", float64(lateness.Microseconds())/1000)
	}
	check("delete", ch.ExchangeDelete(exchange, false, false))
	check("close", conn.Close())
	fmt.Println("done")
}

func check(name string, err error) {
	if err != nil {
		fmt.Printf("FAIL %s: %v\n", name, err)
		os.Exit(1)
	}
}

func declare(ch *amqp.Channel, exchange, queue string) error {
	args := amqp.Table{"x-delayed-type": "direct"}
	if err := ch.ExchangeDeclare(exchange, "x-delayed-message", false, false, false, false, args); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(queue, false, false, true, false, nil); err != nil {
		return err
	}
	return ch.QueueBind(queue, "k", exchange, false, nil)
}

// publish sends one message per delay, confirmed; it returns when each is due (publish time + delay).
func publish(ch *amqp.Channel, exchange string) (map[string]time.Time, error) {
	if err := ch.Confirm(false); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	due := map[string]time.Time{}
	for _, delay := range delays {
		body := fmt.Sprintf("delay %d", delay)
		due[body] = time.Now().Add(time.Duration(delay) * time.Millisecond)
		msg := amqp.Publishing{Body: []byte(body), DeliveryMode: amqp.Persistent, Headers: amqp.Table{"x-delay": delay}}
		confirm, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, "k", false, false, msg)
		if err != nil {
			return nil, err
		}
		acked := make(chan bool, 1)
		go func() { acked <- confirm.Wait() }() // this amqp091-go's Wait takes no deadline
		select {
		case ok := <-acked:
			if !ok {
				return nil, fmt.Errorf("publish of %q nacked", body)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("publish of %q not confirmed within %v", body, timeout)
		}
	}
	return due, nil
}

func receive(deliveries <-chan amqp.Delivery, due map[string]time.Time) ([]string, []time.Duration, error) {
	var got []string
	var late []time.Duration
	deadline := time.After(timeout)
	for len(got) < len(delays) {
		select {
		case d := <-deliveries:
			now := time.Now()
			got = append(got, string(d.Body))
			late = append(late, now.Sub(due[string(d.Body)]))
		case <-deadline:
			return nil, nil, fmt.Errorf("only %v within %v", got, timeout)
		}
	}
	return got, late, nil
}
