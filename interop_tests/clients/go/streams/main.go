// Command streams drives a stream queue with the Go client github.com/rabbitmq/amqp091-go
// (Debian's golang-github-rabbitmq-amqp091-go-dev, built in GOPATH mode: no module download).
//
// Usage: streams AMQP_URL PREFIX. It declares a stream (x-queue-type: stream), publishes ten
// messages with confirms, then consumes with basic.qos and manual acks from "first" and from
// offset 5, checking each delivery's x-stream-offset header (an int64). It prints "ok NAME" per
// scenario, then "done"; the first failure prints "FAIL NAME: error" and exits 1. Every wait is bounded.
// interop_tests/test_streams_other_languages.py runs it and asserts on these lines.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const timeout = 10 * time.Second
const count = 10

func main() {
	if len(os.Args) != 3 {
		fmt.Println("usage: streams AMQP_URL PREFIX")
		os.Exit(2)
	}
	url, prefix := os.Args[1], os.Args[2]
	conn, err := amqp.DialConfig(url, amqp.Config{Heartbeat: 10 * time.Second, Dial: amqp.DefaultDial(timeout)})
	check("connect", err)
	defer conn.Close()
	fmt.Println("ok connect")
	stream := prefix + "-stream"
	run("declare-publish", func() error { return declarePublish(conn, stream) })
	run("consume-first", func() error { return consumeFrom(conn, stream, "first", 0) })
	run("consume-offset", func() error { return consumeFrom(conn, stream, int64(5), 5) })
	run("delete", func() error { return deleteStream(conn, stream) })
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

func declarePublish(conn *amqp.Connection, stream string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	args := amqp.Table{"x-queue-type": "stream"}
	if _, err := ch.QueueDeclare(stream, true, false, false, false, args); err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for i := 0; i < count; i++ {
		msg := amqp.Publishing{Body: []byte(fmt.Sprintf("m%d", i))}
		confirmation, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", stream, false, false, msg)
		if err != nil {
			return err
		}
		acked := make(chan bool, 1)
		go func() { acked <- confirmation.Wait() }() // this amqp091-go's Wait has no deadline of its own
		select {
		case ok := <-acked:
			if !ok {
				return fmt.Errorf("message %d nacked", i)
			}
		case <-ctx.Done():
			return fmt.Errorf("message %d not confirmed: %v", i, ctx.Err())
		}
	}
	return nil
}

// consumeFrom reads the stream from offset (an x-stream-offset value) and checks that it gets
// messages first..count-1, each with its offset in the x-stream-offset header.
func consumeFrom(conn *amqp.Connection, stream string, offset interface{}, first int) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Qos(3, 0, false); err != nil { // a stream consumer needs a prefetch count
		return err
	}
	deliveries, err := ch.Consume(stream, "", false, false, false, false, amqp.Table{"x-stream-offset": offset})
	if err != nil {
		return err
	}
	deadline := time.After(timeout)
	for want := first; want < count; want++ {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return fmt.Errorf("deliveries closed at offset %d", want)
			}
			got, isLong := d.Headers["x-stream-offset"].(int64)
			if !isLong || got != int64(want) || string(d.Body) != fmt.Sprintf("m%d", want) {
				return fmt.Errorf("got %q with x-stream-offset %#v, want m%d at %d", d.Body, d.Headers["x-stream-offset"], want, want)
			}
			if err := d.Ack(false); err != nil { // gives the prefetch credit back
				return err
			}
		case <-deadline:
			return fmt.Errorf("timed out waiting for offset %d", want)
		}
	}
	return nil
}

func deleteStream(conn *amqp.Connection, stream string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = ch.QueueDelete(stream, false, false, false)
	return err
}
