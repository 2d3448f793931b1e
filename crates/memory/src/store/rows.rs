//! A tenant's rows of one kind, ordered newest first by `(created_at, id)` for keyset pages.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use plinth_domain::entities::{Delivery, Project, User, Webhook};
use plinth_domain::events::DomainEvent;
use plinth_domain::page::Cursor;
use time::OffsetDateTime;
use uuid::Uuid;

/// A row's identity and position in lists.
pub(super) trait Row: Clone {
    fn id(&self) -> Uuid;
    fn created_at(&self) -> OffsetDateTime;
}

impl Row for User {
    fn id(&self) -> Uuid {
        *self.id.as_uuid()
    }

    fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
}

impl Row for Project {
    fn id(&self) -> Uuid {
        *self.id.as_uuid()
    }

    fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
}

impl Row for Webhook {
    fn id(&self) -> Uuid {
        *self.id.as_uuid()
    }

    fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
}

impl Row for Delivery {
    fn id(&self) -> Uuid {
        *self.id.as_uuid()
    }

    fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
}

impl Row for DomainEvent {
    fn id(&self) -> Uuid {
        *self.id.as_uuid()
    }

    fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
}

type SortKey = Reverse<(OffsetDateTime, Uuid)>;

/// Rows by sort key (ascending `Reverse` keys iterate newest first, ties by id descending, as
/// PostgreSQL's `ORDER BY created_at DESC, id DESC`), with an index from id to sort key.
pub(super) struct Rows<T> {
    ordered: BTreeMap<SortKey, T>,
    by_id: HashMap<Uuid, SortKey>,
}

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Self { ordered: BTreeMap::new(), by_id: HashMap::new() }
    }
}

impl<T: Row> Rows<T> {
    pub(super) fn get(&self, id: Uuid) -> Option<&T> {
        self.by_id.get(&id).and_then(|k| self.ordered.get(k))
    }

    /// Adds `row`; false (and nothing changes) when its id is taken.
    pub(super) fn insert(&mut self, row: T) -> bool {
        let id = row.id();
        if self.by_id.contains_key(&id) {
            return false;
        }
        let key = Reverse((row.created_at(), id));
        self.by_id.insert(id, key);
        self.ordered.insert(key, row);
        true
    }

    /// Replaces the row with `row`'s id, which must keep its `created_at`; false when absent.
    pub(super) fn replace(&mut self, row: T) -> bool {
        match self.by_id.get(&row.id()) {
            Some(key) if key.0.0 == row.created_at() => {
                self.ordered.insert(*key, row);
                true
            }
            _ => false,
        }
    }

    pub(super) fn remove(&mut self, id: Uuid) -> Option<T> {
        let key = self.by_id.remove(&id)?;
        self.ordered.remove(&key)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.ordered.values()
    }

    /// Keeps only the rows `keep` accepts.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let by_id = &mut self.by_id;
        self.ordered.retain(|_, row| {
            let kept = keep(row);
            if !kept {
                by_id.remove(&row.id());
            }
            kept
        });
    }

    /// How many rows there are, without walking them.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Up to `limit` rows, newest first, strictly after `after`.
    pub(super) fn page(&self, after: Option<&Cursor>, limit: usize) -> Vec<T> {
        self.after(after).take(limit).cloned().collect()
    }

    /// The rows newest first, strictly after `after`.
    pub(super) fn after(&self, after: Option<&Cursor>) -> impl Iterator<Item = &T> {
        let start = match after {
            Some(c) => Bound::Excluded(Reverse((c.created_at, c.id))),
            None => Bound::Unbounded,
        };
        self.ordered.range((start, Bound::Unbounded)).map(|(_, row)| row)
    }
}
