"""The audit trail and spend: records, the spool, the writer process, pricing, reports and audit
verification."""
