"""Sans-IO codec: bytes in, frames out and back. Imports ``struct`` and ``pamqp`` only."""
