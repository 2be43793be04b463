//! Pages of list answers within a byte budget: a list stops adding items once its JSON would
//! pass [`PAGE_BYTES`], and gives a cursor for the rest, so no request makes the server build a
//! large answer whatever the items weigh.

use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ApiError;

/// Bytes of JSON one page of a list answer may hold (4 MiB): `GET /v1/jobs`,
/// `GET /v1/jobs/{id}/logs` and `GET /v1/workloads` stop adding items before the page would
/// pass it, and give a cursor for the rest. A page holds at least one item, so a page may pass
/// it by one item when that item alone does (a job's params are at most 16 MiB).
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The header that carries the cursor of the next page of a list answered as a bare JSON array
/// (`GET /v1/jobs/{id}/logs`, `GET /v1/workloads`); absent on the last page.
pub const NEXT_CURSOR: HeaderName = HeaderName::from_static("next-cursor");

/// A JSON array built item by item within a byte budget.
pub struct Page {
    json: Vec<u8>,
    items: usize,
    budget: usize,
    full: bool,
}

impl Page {
    /// An empty page of at most `budget` bytes of JSON.
    pub fn new(budget: usize) -> Self {
        Self { json: vec![b'['], items: 0, budget, full: false }
    }

    /// Adds `item` unless the page would then pass its budget (the first item is always added).
    /// Returns whether it was added; once one is refused, the page is full and refuses the rest.
    pub fn push<T: Serialize>(&mut self, item: &T) -> Result<bool, ApiError> {
        if self.full {
            return Ok(false);
        }
        let mark = self.json.len();
        if self.items > 0 {
            self.json.push(b',');
        }
        serde_json::to_writer(&mut self.json, item).map_err(ApiError::internal)?;
        // The closing bracket counts too.
        if self.items > 0 && self.json.len() + 1 > self.budget {
            self.json.truncate(mark);
            self.full = true;
            return Ok(false);
        }
        self.items += 1;
        Ok(true)
    }

    /// Items added.
    pub fn items(&self) -> usize {
        self.items
    }

    /// Whether an item was refused for the budget.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The array's JSON text.
    pub fn into_json(mut self) -> Vec<u8> {
        self.json.push(b']');
        self.json
    }

    /// The array as a 200 answer, with the `next-cursor` header when `cursor` is given.
    pub fn into_response(self, cursor: Option<String>) -> Response {
        let mut resp = ([(header::CONTENT_TYPE, "application/json")], self.into_json()).into_response();
        if let Some(v) = cursor.and_then(|c| c.parse().ok()) {
            resp.headers_mut().insert(NEXT_CURSOR, v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_stops_before_its_budget_and_holds_at_least_one_item() {
        let item = "x".repeat(10); // 12 bytes of JSON
        let mut page = Page::new(30);
        assert!(page.push(&item).unwrap());
        assert!(page.push(&item).unwrap(), "[12,12] is 27 bytes");
        assert!(!page.push(&item).unwrap(), "a third would make 40");
        assert!(!page.push(&1).unwrap(), "a full page takes nothing more, even small");
        assert!(page.is_full());
        let json = page.into_json();
        assert_eq!(json.len(), 27);
        assert_eq!(serde_json::from_slice::<Vec<String>>(&json).unwrap(), vec![item.clone(), item.clone()]);
        let mut one = Page::new(5);
        assert!(one.push(&item).unwrap(), "the first item always goes in");
        assert_eq!((one.items(), one.is_full()), (1, false));
    }
}
