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
}
