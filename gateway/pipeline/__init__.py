"""One request end to end: context, dispatch of upstream calls, retries and fallbacks, relay to the
client, bookkeeping."""
