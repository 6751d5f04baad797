# The broker as a container: installed the way the README installs it, run as a non-root user,
# data in a volume at a fixed path (not a hostname-named directory, so `down && up` keeps it).
# TLS (amqps, port 5671) is on when AMQP_SERVER_TLS_CERT and AMQP_SERVER_TLS_KEY name mounted files.
FROM python:3.12-slim
RUN useradd --system --create-home --home-dir /home/amqp amqp \
 && mkdir -p /var/lib/amqp-server && chown amqp /var/lib/amqp-server
WORKDIR /src
COPY pyproject.toml README.md ./
COPY amqp_server ./amqp_server
COPY storage ./storage
# with psycopg (the postgresql extra), so that --store postgresql://… works: the failover profile of docker-compose.yml
RUN pip install --no-cache-dir ".[postgresql]"
USER amqp
# Clients reach a container from outside its loopback, so `guest` may log in from anywhere here,
# as in RabbitMQ's official image (loopback_users.guest = false); publish the ports on 127.0.0.1 only.
ENV AMQP_SERVER_HOST=0.0.0.0 \
    AMQP_SERVER_PORT=5672 \
    AMQP_SERVER_TLS_PORT=5671 \
    AMQP_SERVER_MANAGEMENT_PORT=15672 \
    AMQP_SERVER_PROMETHEUS_PORT=15692 \
    AMQP_SERVER_DATA_DIR=/var/lib/amqp-server \
    AMQP_SERVER_LOOPBACK_USERS=""
VOLUME /var/lib/amqp-server
EXPOSE 5672 5671 15672 15692
# A real AMQP handshake (login, open vhost, close), not just an open port.
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 \
    CMD ["python", "-m", "amqp_server.ops.healthcheck", "--port", "5672"]
CMD ["amqp-server"]
