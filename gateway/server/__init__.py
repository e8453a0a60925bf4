"""The server process: the aiohttp application, start-up, reload and shutdown, health, listening
sockets and the connection guards."""
