//! Shared by the benchmarks that time the policy as a plain Rust function.

use tiergate_policy::testing;

/// The transaction as a policy sees it: every field the sandbox receives, so
/// the native function decides on the same input as the component.
pub fn policy_view(tx: &tiergate_runtime::Transaction) -> tiergate_policy::Transaction {
    let mut b = testing::transaction(&tx.amount.to_string(), &tx.category)
        .id(&tx.id)
        .tenant(&tx.tenant)
        .agent(&tx.agent)
        .currency(&tx.currency)
        .recipient(&tx.recipient)
        .trust(tx.recipient_trust)
        .requested_at_ms(tx.requested_at_ms);
    if let Some(j) = &tx.jurisdiction {
        b = b.jurisdiction(j);
    }
    if let Some(j) = &tx.justification {
        b = b.justification(j);
    }
    if let Some(n) = &tx.network {
        b = b.network(n);
    }
    for (k, v) in &tx.metadata {
        b = b.meta(k, v);
    }
    b.build()
}
