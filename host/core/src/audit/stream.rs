//! Reading a tenant's records page by page, so exports, verification and
//! replay run in bounded memory however long the history.

use super::Query;
use crate::record::Authorization;
use crate::store::{AuditEvent, Store, StoreError};

/// Rows per page: large enough that paging costs little, small enough to
/// keep memory flat.
const PAGE: usize = 10_000;

/// Pages of the tenant's audit events after `after_seq`, in chain order.
pub(crate) fn event_pages<'a>(
    store: &'a dyn Store,
    tenant: &'a str,
    mut after_seq: u64,
) -> impl Iterator<Item = Result<Vec<AuditEvent>, StoreError>> + 'a {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let page = store.events_after(tenant, after_seq, PAGE);
        match &page {
            Ok(events) if events.is_empty() => return None,
            Ok(events) => {
                done = events.len() < PAGE;
                after_seq = events.last().map_or(after_seq, |e| e.seq);
            }
            Err(_) => done = true,
        }
        Some(page)
    })
}

/// Every audit event of the tenant, in chain order, read a page at a time.
pub fn events<'a>(
    store: &'a dyn Store,
    tenant: &'a str,
) -> impl Iterator<Item = Result<AuditEvent, StoreError>> + 'a {
    flatten(event_pages(store, tenant, 0))
}

/// Every authorization of the tenant, in request order, read a page at a time.
pub fn authorizations<'a>(
    store: &'a dyn Store,
    tenant: &'a str,
) -> impl Iterator<Item = Result<Authorization, StoreError>> + 'a {
    authorizations_between(store, tenant, 0, u64::MAX)
}

/// The tenant's authorizations requested in `[from_ms, to_ms)`, in request
/// order, read a page at a time starting at `from_ms`.
pub fn authorizations_between<'a>(
    store: &'a dyn Store,
    tenant: &'a str,
    from_ms: u64,
    to_ms: u64,
) -> impl Iterator<Item = Result<Authorization, StoreError>> + 'a {
    pages_between(store, tenant, None, from_ms, to_ms)
}

/// The tenant's authorizations that match `query`, in request order, read a
/// page at a time: its audit id, time range and agent narrow what the store
/// reads, its other filters are applied to each row.
pub fn matching<'a>(
    store: &'a dyn Store,
    tenant: &'a str,
    query: &'a Query,
) -> impl Iterator<Item = Result<Authorization, StoreError>> + 'a {
    let rows: Box<dyn Iterator<Item = Result<Authorization, StoreError>> + 'a> =
        match &query.audit_id {
            // At most one payment has it.
            Some(audit_id) => {
                let found = store
                    .tx_with_audit_id(tenant, audit_id)
                    .and_then(|tx| tx.map_or(Ok(None), |tx| store.get(tenant, &tx)));
                Box::new(found.transpose().into_iter())
            }
            None => {
                let (from, to) = (query.from_ms.unwrap_or(0), query.to_ms.unwrap_or(u64::MAX));
                Box::new(pages_between(
                    store,
                    tenant,
                    query.agent.as_deref(),
                    from,
                    to,
                ))
            }
        };
    rows.filter(|a| a.as_ref().map_or(true, |a| query.matches(a)))
}

fn pages_between<'a>(
    store: &'a dyn Store,
    tenant: &'a str,
    agent: Option<&'a str>,
    from_ms: u64,
    to_ms: u64,
) -> impl Iterator<Item = Result<Authorization, StoreError>> + 'a {
    // Just before `from_ms`: after every id requested a millisecond earlier
    // (no UTF-8 text sorts after U+10FFFF's bytes).
    let mut after: Option<(u64, String)> =
        (from_ms > 0).then(|| (from_ms - 1, char::MAX.to_string()));
    let mut done = false;
    let pages = std::iter::from_fn(move || {
        if done {
            return None;
        }
        let page = store.authorizations_after(
            tenant,
            agent,
            after.as_ref().map(|(at, id)| (*at, id.as_str())),
            to_ms,
            PAGE,
        );
        match &page {
            Ok(rows) if rows.is_empty() => return None,
            Ok(rows) => {
                done = rows.len() < PAGE;
                after = rows
                    .last()
                    .map(|a| (a.transaction.requested_at_ms, a.transaction.id.clone()));
            }
            Err(_) => done = true,
        }
        Some(page)
    });
    flatten(pages)
}

fn flatten<T>(
    pages: impl Iterator<Item = Result<Vec<T>, StoreError>>,
) -> impl Iterator<Item = Result<T, StoreError>> {
    pages.flat_map(|page| match page {
        Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => vec![Err(e)],
    })
}
