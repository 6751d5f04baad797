# The broker as a container: installed the way the README installs it, run as a non-root user,
# data in a volume at a fixed path (not a hostname-named directory, so `down && up` keeps it).
FROM python:3.12-slim
RUN useradd --system --create-home --home-dir /home/amqp amqp \
 && mkdir -p /var/lib/amqp-server && chown amqp /var/lib/amqp-server
WORKDIR /src
COPY pyproject.toml README.md ./
COPY amqp_server ./amqp_server
COPY storage ./storage
RUN pip install --no-cache-dir .
USER amqp
ENV AMQP_SERVER_HOST=0.0.0.0 \
    AMQP_SERVER_PORT=5672 \
    AMQP_SERVER_DATA_DIR=/var/lib/amqp-server
VOLUME /var/lib/amqp-server
EXPOSE 5672
CMD ["amqp-server"]
