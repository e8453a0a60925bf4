"""AWS Bedrock's Converse API: the provider adapter and its wire shapes."""
