"""What providers keep for a caller (files, uploads, batches, stored completions and responses) and who
owns it."""
