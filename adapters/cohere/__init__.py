"""Cohere: v2 chat and the rerank format."""
