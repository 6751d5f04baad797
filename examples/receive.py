"""The receiving side of the seed example: consume 'hello' and print each message.

Connects to localhost like ``send.py``; in docker compose both share the broker
container's network, so 'localhost' is the broker there too.  Waits for the
queue's first message, prints it, and exits (``--forever`` keeps consuming).
"""

import sys

import pika

connection = pika.BlockingConnection(pika.ConnectionParameters("localhost"))
channel = connection.channel()
channel.queue_declare(queue="hello")


def callback(ch, method, properties, body):
    print(f" [x] Received {body!r}", flush=True)
    if "--forever" not in sys.argv:
        ch.stop_consuming()


channel.basic_consume(queue="hello", on_message_callback=callback, auto_ack=True)
print(" [*] Waiting for messages.", flush=True)
channel.start_consuming()
connection.close()
