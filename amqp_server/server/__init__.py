"""The asyncio adapter: the only package that imports asyncio."""
