//! Keyset pagination, one shape for every list: newest first by `(created_at, id)`, with a
//! statement for the first page and one for a page after a cursor (a single statement with an
//! `IS NULL OR` cursor test would let a generic plan scan from the top for deep pages).

use plinth_domain::Result;
use plinth_domain::ids::TenantId;
use plinth_domain::page::Cursor;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::pool::{Conn, tenant_read};

/// The two statements of one list. Its filter takes `$1..$n` (the tenant first); the first
/// page's limit is `$n+1`; a later page's cursor is `$n+1, $n+2` and its limit `$n+3`.
#[derive(Debug, Clone, Copy)]
pub struct Keyset {
    /// The first page.
    pub first: &'static str,
    /// A page after a cursor.
    pub after: &'static str,
}

/// A [`Keyset`] from its columns, table, filter and the numbers of its parameters.
macro_rules! keyset {
    ($columns:expr, from $table:literal where $filter:literal,
     first limit $first_limit:literal, after ($at:literal, $id:literal) limit $after_limit:literal) => {
        $crate::keyset::Keyset {
            first: concat!(
                "SELECT ",
                $columns,
                " FROM ",
                $table,
                " WHERE ",
                $filter,
                " ORDER BY created_at DESC, id DESC LIMIT ",
                $first_limit
            ),
            after: concat!(
                "SELECT ",
                $columns,
                " FROM ",
                $table,
                " WHERE ",
                $filter,
                " AND (created_at, id) < (",
                $at,
                ", ",
                $id,
                ") ORDER BY created_at DESC, id DESC LIMIT ",
                $after_limit
            ),
        }
    };
}
pub(crate) use keyset;

impl Keyset {
    /// Up to `limit` rows after `after` (or the first page), read in one pipelined round trip
    /// under `tenant`; `filter` are the filter's parameters, the tenant's id first.
    pub(crate) async fn page(
        &self,
        client: &Conn<'_>,
        tenant: TenantId,
        filter: &[&(dyn ToSql + Sync)],
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let at_most = limit;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut params = Vec::with_capacity(filter.len() + 3);
        params.extend_from_slice(filter);
        let sql = match after {
            None => self.first,
            Some(c) => {
                params.push(&c.created_at);
                params.push(&c.id);
                self.after
            }
        };
        params.push(&limit);
        tenant_read(client, tenant, sql, &params, at_most).await
    }
}

#[cfg(test)]
mod tests {
    /// The highest `$n` in `sql`.
    fn last_param(sql: &str) -> usize {
        sql.split('$')
            .skip(1)
            .filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn every_list_numbers_its_parameters_as_page_binds_them() {
        for (keyset, filter) in [
            (crate::projects::LIST, 1),
            (crate::users::LIST, 1),
            (crate::webhooks::LIST, 1),
            (crate::webhooks::DELIVERIES, 2),
            (crate::events::LIST, 2),
            (crate::events::LIST_OF_KIND, 3),
        ] {
            assert_eq!(last_param(keyset.first), filter + 1, "{}", keyset.first);
            assert_eq!(last_param(keyset.after), filter + 3, "{}", keyset.after);
            assert!(keyset.after.contains(&format!("< (${}, ${})", filter + 1, filter + 2)), "{}", keyset.after);
        }
    }
}
