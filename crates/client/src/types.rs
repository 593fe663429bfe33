//! The inventory API's bodies, as API.md writes them.
//!
//! Responses keep any field this client does not know in `extra`, so that printing a response
//! back as JSON loses nothing the server said (API.md lets the server add fields).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/inventory/adjustments`: add or remove stock with a reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustRequest {
    /// The idempotency key (1..=128 bytes).
    pub request_id: String,
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Units to add (positive) or remove (negative).
    pub delta: i64,
    /// Why.
    pub reason: String,
}

/// `POST /v1/inventory/counts`: what is on the shelf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountRequest {
    /// The idempotency key.
    pub request_id: String,
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Units counted.
    pub on_hand: i64,
    /// Refuse (409 `count_conflict`) unless `on_hand` is this now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_on_hand: Option<i64>,
}

/// `POST /v1/inventory/policies`: safety stock and backorder limit (absent fields are unchanged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRequest {
    /// The idempotency key.
    pub request_id: String,
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Units kept back from `available`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_stock: Option<i64>,
    /// How far below zero `available` may go for reservations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backorder_limit: Option<i64>,
}

/// One line of a reservation request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveLine {
    /// The SKU.
    pub sku: String,
    /// Where from; absent lets the server allocate across locations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Units (positive).
    pub qty: i64,
}

/// `POST /v1/inventory/reservations`: hold stock for an order, all lines or none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveRequest {
    /// The idempotency key.
    pub request_id: String,
    /// The caller's order.
    pub order_id: String,
    /// What to hold.
    pub lines: Vec<ReserveLine>,
    /// How long to hold it (server default 900000, at most 86400000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// One SKU at one location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Units on the shelf.
    pub on_hand: i64,
    /// Units held by active reservations.
    pub reserved: i64,
    /// Units kept back.
    pub safety_stock: i64,
    /// How far below zero `available` may go for reservations.
    pub backorder_limit: i64,
    /// `on_hand - reserved - safety_stock`.
    pub available: i64,
    /// True while `on_hand < reserved`.
    pub oversold: bool,
    /// Fields this client does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The answer to an adjustment, a count or a policy: `{lsn, item}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemWrite {
    /// The log position of the write.
    pub lsn: u64,
    /// The item after it.
    pub item: Item,
    /// Fields this client does not know (such as `positions`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET /v1/inventory/items/{sku}`: a SKU at every location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSummary {
    /// The SKU.
    pub sku: String,
    /// Available over every location.
    pub total_available: i64,
    /// One entry per location.
    pub locations: Vec<Item>,
    /// The log position the read saw.
    pub lsn: u64,
    /// Fields this client does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where a reservation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Holding stock.
    Active,
    /// Shipped.
    Confirmed,
    /// Given back by a caller.
    Released,
    /// Given back at its expiry time.
    Expired,
}

impl ReservationState {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Active => "active",
            ReservationState::Confirmed => "confirmed",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
        }
    }
}

impl std::fmt::Display for ReservationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A line of a reservation as decided: where the units come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedLine {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Units.
    pub qty: i64,
}

/// A reservation, as created, confirmed, released or read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The public id (`"{shard}-{number}"`).
    pub reservation_id: String,
    /// The caller's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Its state.
    pub state: ReservationState,
    /// When it expires (log time, ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// Where every unit comes from.
    #[serde(default)]
    pub lines: Vec<ReservedLine>,
    /// The log position of the write (absent on a read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<u64>,
    /// Fields this client does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn optional_request_fields_are_left_out_when_unset() {
        let request = ReserveRequest {
            request_id: "r".into(),
            order_id: "o".into(),
            lines: vec![ReserveLine {
                sku: "A".into(),
                location: None,
                qty: 1,
            }],
            ttl_ms: None,
        };
        assert_eq!(
            serde_json::to_value(&request).expect("encodes"),
            json!({"request_id": "r", "order_id": "o", "lines": [{"sku": "A", "qty": 1}]})
        );
    }

    #[test]
    fn unknown_response_fields_survive_a_round_trip() {
        let body = json!({"lsn": 3, "positions": [{"shard": 0, "lsn": 3}], "item": {"sku": "A",
            "location": "W1", "on_hand": 5, "reserved": 1, "safety_stock": 0,
            "backorder_limit": 0, "available": 4, "oversold": false}});
        let write: ItemWrite = serde_json::from_value(body.clone()).expect("decodes");
        assert_eq!(write.item.available, 4);
        assert_eq!(serde_json::to_value(&write).expect("encodes"), body);
    }
}

/// `POST /v1/markets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketRequest {
    /// Idempotency key.
    pub request_id: String,
    /// The market's symbol.
    pub symbol: String,
    /// Prices are multiples of this.
    pub tick_size: i64,
    /// Quantities are multiples of this.
    pub lot_size: i64,
}

/// `POST /v1/markets/{symbol}/orders`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    /// Idempotency key.
    pub request_id: String,
    /// The account the order is for.
    pub account: String,
    /// `buy` or `sell`.
    pub side: String,
    /// `limit` or `market`.
    #[serde(rename = "type")]
    pub order_type: String,
    /// Limit price (limit orders only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    /// Units.
    pub qty: i64,
    /// `gtc`, `ioc` or `fok`.
    pub time_in_force: String,
    /// Refuse to trade on arrival.
    pub post_only: bool,
}

/// `POST /v1/datasets`: a dataset, with optional guardrails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetRequest {
    /// Idempotency key.
    pub request_id: String,
    /// The dataset's name.
    pub name: String,
    /// `{json_schema?, numeric_bounds?, max_change_pct?, max_changed_keys?}` as API.md writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<Value>,
}

/// One change of a draft: a key's new value (`null` deletes the key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DraftChange {
    /// The dataset.
    pub dataset: String,
    /// The key.
    pub key: String,
    /// The new value; `null` deletes.
    #[serde(default)]
    pub value: Value,
}

/// `POST /v1/drafts`: a draft with its first changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DraftRequest {
    /// Idempotency key.
    pub request_id: String,
    /// What the draft is for.
    pub note: String,
    /// The changes (more may be appended).
    pub changes: Vec<DraftChange>,
}

/// `POST /v1/drafts/{id}/changes`: more changes for an unreleased draft.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DraftAppendRequest {
    /// Idempotency key.
    pub request_id: String,
    /// The changes.
    pub changes: Vec<DraftChange>,
}

/// The gray rules of a release: a reader gets it when any rule matches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GrayRules {
    /// A number in (0, 100] with at most 2 decimals, stable per user and release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<serde_json::Number>,
    /// These users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// These channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// These regions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// These segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<String>,
}

/// `POST /v1/releases`: releases a draft, live, gray or scheduled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// Idempotency key.
    pub request_id: String,
    /// The draft to release.
    pub draft_id: u64,
    /// Gray rules; absent releases to everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray: Option<GrayRules>,
    /// Go live at this time (Unix milliseconds) rather than now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go_live_at_ms: Option<u64>,
    /// Revert at this time (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_at_ms: Option<u64>,
    /// Admin only: release despite guardrail violations, for this recorded reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_reason: Option<String>,
}

/// `POST /v1/rollbacks`: restores the content right after a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// Idempotency key.
    pub request_id: String,
    /// The release whose content to restore.
    pub to_release_id: u64,
    /// Why (kept in the history).
    pub reason: String,
}

/// Who reads, for gray rules (every field optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadContext {
    /// The reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The reader's channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The reader's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The reader's segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<String>,
}

/// One key of a batch read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadKey {
    /// The dataset.
    pub dataset: String,
    /// The key.
    pub key: String,
}

/// `POST /v1/reads`: many keys from one consistent view.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadsRequest {
    /// Who reads; absent reads what is live for everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ReadContext>,
    /// The keys.
    pub keys: Vec<ReadKey>,
}
