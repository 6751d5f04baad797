"""The sans-IO broker model: connections, channels, exchanges, queues. Synchronous; no asyncio."""
