//! A Rust client for Cairn's HTTP API: the inventory and matching endpoints and the health probes.
//!
//! A thin layer on purpose: one method per endpoint of API.md, request bodies as typed structs,
//! responses typed where their shape is fixed ([`Item`], [`Reservation`]) and
//! [`serde_json::Value`] where it is open (history, probes). Every failure is a [`ClientError`]:
//! the server's own `{"error": {...}}` body becomes [`ClientError::Api`] with its code, so callers
//! match on `insufficient_stock` or `reservation_not_active` rather than on statuses.
//!
//! Retrying is the caller's business, and safe: every mutation carries a `request_id`, and the
//! server answers a repeated one with the first outcome ([`new_request_id`] makes fresh ones).
//! Every call is bounded by a timeout ([`REQUEST_TIMEOUT_MS_DEFAULT`] unless set otherwise).

#![deny(missing_docs)]

mod error;
mod path;
mod types;

pub use error::{BODY_EXCERPT_BYTES_MAX, ClientError, api_error};
pub use path::{encode_path_segment, new_request_id};
pub use types::{
    AdjustRequest, CountRequest, Item, ItemSummary, ItemWrite, MarketRequest, OrderRequest,
    PolicyRequest, Reservation, ReservationState, ReserveLine, ReserveRequest, ReservedLine,
};
pub use types::{
    DatasetRequest, DraftAppendRequest, DraftChange, DraftRequest, GrayRules, ReadContext, ReadKey,
    ReadsRequest, ReleaseRequest, RollbackRequest,
};

use path::segment;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;

/// The longest a call may take, from connecting to the last byte of the answer, by default.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// The longest connecting may take.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// A connection to one Cairn server with one bearer token. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl Client {
    /// A client for the server at `base_url` (such as `http://127.0.0.1:8080`), sending `token`
    /// as the bearer token, with the default timeout.
    ///
    /// # Errors
    /// [`ClientError::Transport`] when the HTTP stack cannot be set up.
    pub fn new(
        base_url: impl Into<String>,
        token: impl Into<String>,
    ) -> Result<Client, ClientError> {
        Client::with_timeout_ms(base_url, token, REQUEST_TIMEOUT_MS_DEFAULT)
    }

    /// As [`Client::new`], with every call bounded by `timeout_ms`.
    ///
    /// # Errors
    /// [`ClientError::Transport`] when the HTTP stack cannot be set up.
    pub fn with_timeout_ms(
        base_url: impl Into<String>,
        token: impl Into<String>,
        timeout_ms: u64,
    ) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS.min(timeout_ms)))
            .build()?;
        Ok(Client::with_http(base_url, token, http))
    }

    /// A client over a `reqwest::Client` configured by the caller.
    #[must_use]
    pub fn with_http(
        base_url: impl Into<String>,
        token: impl Into<String>,
        http: reqwest::Client,
    ) -> Client {
        let base_url = base_url.into().trim_end_matches('/').to_string();
        Client {
            http,
            base_url,
            token: token.into(),
        }
    }

    /// The server's base URL, without a trailing `/`.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `POST /v1/inventory/adjustments`.
    ///
    /// # Errors
    /// See [`ClientError`]; 409 `insufficient_stock` when stock would go below zero or `reserved`.
    pub async fn adjust(&self, request: &AdjustRequest) -> Result<ItemWrite, ClientError> {
        self.post("/v1/inventory/adjustments", request).await
    }

    /// `POST /v1/inventory/counts`.
    ///
    /// # Errors
    /// See [`ClientError`]; 409 `count_conflict` when `expected_on_hand` differs.
    pub async fn count(&self, request: &CountRequest) -> Result<ItemWrite, ClientError> {
        self.post("/v1/inventory/counts", request).await
    }

    /// `POST /v1/inventory/policies`.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn set_policy(&self, request: &PolicyRequest) -> Result<ItemWrite, ClientError> {
        self.post("/v1/inventory/policies", request).await
    }

    /// `POST /v1/inventory/reservations`.
    ///
    /// # Errors
    /// See [`ClientError`]; 409 `insufficient_stock` (with `details.lines`) or `order_closed`.
    pub async fn reserve(&self, request: &ReserveRequest) -> Result<Reservation, ClientError> {
        self.post("/v1/inventory/reservations", request).await
    }

    /// `POST /v1/inventory/reservations/{id}/confirm`: ship the goods.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown id, 409 `reservation_not_active`.
    pub async fn confirm(
        &self,
        reservation_id: &str,
        request_id: &str,
    ) -> Result<Reservation, ClientError> {
        self.finish(reservation_id, request_id, "confirm").await
    }

    /// `POST /v1/inventory/reservations/{id}/release`: give the stock back.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown id, 409 `reservation_not_active`.
    pub async fn release(
        &self,
        reservation_id: &str,
        request_id: &str,
    ) -> Result<Reservation, ClientError> {
        self.finish(reservation_id, request_id, "release").await
    }

    /// `GET /v1/inventory/reservations/{id}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown id.
    pub async fn reservation(&self, reservation_id: &str) -> Result<Reservation, ClientError> {
        let id = segment("reservation id", reservation_id)?;
        self.get(&format!("/v1/inventory/reservations/{id}")).await
    }

    /// `GET /v1/inventory/items/{sku}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for a SKU never seen.
    pub async fn item(&self, sku: &str) -> Result<ItemSummary, ClientError> {
        let sku = segment("sku", sku)?;
        self.get(&format!("/v1/inventory/items/{sku}")).await
    }

    /// `GET /v1/inventory/items/{sku}/history`: `{sku, events: [{lsn, at_ms, type, ...}]}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for a SKU never seen.
    pub async fn history(&self, sku: &str) -> Result<Value, ClientError> {
        let sku = segment("sku", sku)?;
        self.get(&format!("/v1/inventory/items/{sku}/history"))
            .await
    }

    /// `POST /v1/markets`: opens a market. `{symbol, lsn}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 409 `already_exists` for a taken symbol.
    pub async fn create_market(&self, request: &MarketRequest) -> Result<Value, ClientError> {
        self.post("/v1/markets", request).await
    }

    /// `POST /v1/markets/{symbol}/orders`: `{order_id, status, filled_qty, remaining_qty,
    /// trades, lsn}` (a market-outcome rejection is a success with `status: "rejected"`).
    ///
    /// # Errors
    /// See [`ClientError`]; 400 for a price off the tick or a quantity off the lot, 404 for an
    /// unknown market.
    pub async fn place_order(
        &self,
        symbol: &str,
        request: &OrderRequest,
    ) -> Result<Value, ClientError> {
        let symbol = segment("symbol", symbol)?;
        self.post(&format!("/v1/markets/{symbol}/orders"), request)
            .await
    }

    /// `DELETE /v1/markets/{symbol}/orders/{order_id}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 409 `order_not_open`, 404 for an unknown order.
    pub async fn cancel_order(
        &self,
        symbol: &str,
        order_id: u64,
        request_id: &str,
    ) -> Result<Value, ClientError> {
        let symbol = segment("symbol", symbol)?;
        let request_id = segment("request id", request_id)?;
        self.send(
            Method::DELETE,
            &format!("/v1/markets/{symbol}/orders/{order_id}?request_id={request_id}"),
            None::<&()>,
        )
        .await
    }

    /// `GET /v1/markets/{symbol}/orders/{order_id}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown market or order.
    pub async fn order(&self, symbol: &str, order_id: u64) -> Result<Value, ClientError> {
        let symbol = segment("symbol", symbol)?;
        self.get(&format!("/v1/markets/{symbol}/orders/{order_id}"))
            .await
    }

    /// `GET /v1/markets/{symbol}/book?depth=N`: `{bids, asks, lsn}`, best first.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown market.
    pub async fn book(&self, symbol: &str, depth: usize) -> Result<Value, ClientError> {
        let symbol = segment("symbol", symbol)?;
        self.get(&format!("/v1/markets/{symbol}/book?depth={depth}"))
            .await
    }

    /// `GET /v1/markets/{symbol}/trades?after_trade_id=N&limit=M`, in execution order.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown market.
    pub async fn trades(
        &self,
        symbol: &str,
        after_trade_id: u64,
        limit: usize,
    ) -> Result<Value, ClientError> {
        let symbol = segment("symbol", symbol)?;
        self.get(&format!(
            "/v1/markets/{symbol}/trades?after_trade_id={after_trade_id}&limit={limit}"
        ))
        .await
    }

    /// `GET /healthz`: the process answers.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn healthz(&self) -> Result<Value, ClientError> {
        self.send(Method::GET, "/healthz", None::<&()>).await
    }

    /// `GET /readyz`: every shard accepts writes. A node that is not ready is
    /// [`ClientError::Api`] with status 503, code `http_503` and the server's body (naming the
    /// stopped shards) as `details`.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn readyz(&self) -> Result<Value, ClientError> {
        self.send(Method::GET, "/readyz", None::<&()>).await
    }

    async fn finish(
        &self,
        reservation_id: &str,
        request_id: &str,
        action: &str,
    ) -> Result<Reservation, ClientError> {
        let id = segment("reservation id", reservation_id)?;
        let body = json!({ "request_id": request_id });
        self.post(&format!("/v1/inventory/reservations/{id}/{action}"), &body)
            .await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::GET, path, None::<&()>).await
    }

    /// One request: `path` is already encoded. A success is decoded as `T`; anything else is
    /// [`api_error`].
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base_url);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|error| {
            ClientError::Decode(format!(
                "{url} answered {status} with a body that does not fit ({error}): {}",
                error::excerpt(&bytes)
            ))
        })
    }

    /// `POST /v1/datasets`: `{name, lsn}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 409 `already_exists` for a taken name.
    pub async fn create_dataset(&self, request: &DatasetRequest) -> Result<Value, ClientError> {
        self.post("/v1/datasets", request).await
    }

    /// `POST /v1/drafts`: `{draft_id, changes_total, lsn}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown dataset, 413 when the changes are too large for
    /// one request (add the rest with [`Client::append_to_draft`]).
    pub async fn create_draft(&self, request: &DraftRequest) -> Result<Value, ClientError> {
        self.post("/v1/drafts", request).await
    }

    /// `POST /v1/drafts/{id}/changes`: `{draft_id, changes_total, lsn}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown draft or dataset, 409 `draft_already_released`.
    pub async fn append_to_draft(
        &self,
        draft_id: u64,
        request: &DraftAppendRequest,
    ) -> Result<Value, ClientError> {
        self.post(&format!("/v1/drafts/{draft_id}/changes"), request)
            .await
    }

    /// `GET /v1/drafts/{id}`: `{draft_id, note, author, created_at_ms, changes_total, datasets,
    /// release_id, lsn}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown draft.
    pub async fn draft(&self, draft_id: u64) -> Result<Value, ClientError> {
        self.get(&format!("/v1/drafts/{draft_id}")).await
    }

    /// `GET /v1/drafts/{id}/diff`: a page of `{changes: [{dataset, key, before, after}],
    /// changes_total, next_after, violations, violations_total, lsn}`, after `(dataset, key)`
    /// when given, at most `limit` changes (server default 100, at most 1000).
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown draft, 409 `draft_already_released`.
    pub async fn draft_diff(
        &self,
        draft_id: u64,
        after: Option<(&str, &str)>,
        limit: Option<usize>,
    ) -> Result<Value, ClientError> {
        let mut query = Vec::new();
        if let Some((dataset, key)) = after {
            query.push(format!("after_dataset={}", encode_path_segment(dataset)));
            query.push(format!("after_key={}", encode_path_segment(key)));
        }
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        self.get(&Client::with_query(
            &format!("/v1/drafts/{draft_id}/diff"),
            &query,
        ))
        .await
    }

    /// `POST /v1/releases`: `{release_id, state, lsn}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 422 `guardrail_violation` (with `details.violations`), 403 for
    /// `force_reason` from a non-admin, 409 `draft_already_released` or `release_in_progress`.
    pub async fn create_release(&self, request: &ReleaseRequest) -> Result<Value, ClientError> {
        self.post("/v1/releases", request).await
    }

    /// `POST /v1/releases/{id}/promote`: a gray or scheduled release goes live for everyone.
    /// `{release_id, state, lsn}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown release, 409 `invalid_release_state`.
    pub async fn promote_release(
        &self,
        release_id: u64,
        request_id: &str,
    ) -> Result<Value, ClientError> {
        let body = json!({ "request_id": request_id });
        self.post(&format!("/v1/releases/{release_id}/promote"), &body)
            .await
    }

    /// `POST /v1/releases/{id}/abort`: a gray or scheduled release ends. `{release_id, state,
    /// lsn}`.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown release, 409 `invalid_release_state`.
    pub async fn abort_release(
        &self,
        release_id: u64,
        request_id: &str,
    ) -> Result<Value, ClientError> {
        let body = json!({ "request_id": request_id });
        self.post(&format!("/v1/releases/{release_id}/abort"), &body)
            .await
    }

    /// `POST /v1/rollbacks`: `{release_id, state, lsn}` of the new release that restores.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown release, 409 `not_a_rollback_target`.
    pub async fn rollback(&self, request: &RollbackRequest) -> Result<Value, ClientError> {
        self.post("/v1/rollbacks", request).await
    }

    /// `GET /v1/datasets/{name}/keys/{key}`: `{value, release_id, lsn}` as a reader with
    /// `context` is served it.
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown dataset or a key not in the served release.
    pub async fn published_value(
        &self,
        dataset: &str,
        key: &str,
        context: &ReadContext,
    ) -> Result<Value, ClientError> {
        let dataset = segment("dataset", dataset)?;
        let key = segment("key", key)?;
        let mut query = Vec::new();
        for (name, value) in [
            ("user_id", &context.user_id),
            ("channel", &context.channel),
            ("region", &context.region),
        ] {
            if let Some(value) = value {
                query.push(format!("{name}={}", encode_path_segment(value)));
            }
        }
        if !context.segments.is_empty() {
            let segments: Vec<String> = context
                .segments
                .iter()
                .map(|s| encode_path_segment(s))
                .collect();
            query.push(format!("segments={}", segments.join(",")));
        }
        self.get(&Client::with_query(
            &format!("/v1/datasets/{dataset}/keys/{key}"),
            &query,
        ))
        .await
    }

    /// `POST /v1/reads`: `{values: [{dataset, key, value, release_id}], lsn}`, all from one
    /// consistent view (a missing key has `value: null`).
    ///
    /// # Errors
    /// See [`ClientError`]; 404 for an unknown dataset.
    pub async fn read_values(&self, request: &ReadsRequest) -> Result<Value, ClientError> {
        self.post("/v1/reads", request).await
    }

    /// `GET /v1/releases`: `{releases: [...], lsn}`, oldest first, only those after
    /// `after_release_id` when given, at most `limit` (server default 1000, at most 10000).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn releases(
        &self,
        after_release_id: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Value, ClientError> {
        let mut query = Vec::new();
        if let Some(after) = after_release_id {
            query.push(format!("after_release_id={after}"));
        }
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        self.get(&Client::with_query("/v1/releases", &query)).await
    }

    /// `path?a&b...`, or `path` alone without query parts.
    fn with_query(path: &str, query: &[String]) -> String {
        if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", query.join("&"))
        }
    }
}
