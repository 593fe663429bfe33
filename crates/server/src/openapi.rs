//! The OpenAPI 3 document at `/openapi.json`, generated from the handlers' annotations and the
//! request types. Response shapes are described by the `*Doc` types below; a test compares them
//! with live responses so the document cannot drift from what the server sends.

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// An item: stock of one SKU at one location.
#[derive(Serialize, ToSchema)]
pub struct ItemDoc {
    sku: String,
    location: String,
    on_hand: i64,
    reserved: i64,
    safety_stock: i64,
    backorder_limit: i64,
    /// `on_hand - reserved - safety_stock`.
    available: i64,
    /// True while `on_hand < reserved`.
    oversold: bool,
}

/// Reply to an adjustment, count or policy change.
#[derive(Serialize, ToSchema)]
pub struct ItemReplyDoc {
    /// Log position of the change.
    lsn: u64,
    item: ItemDoc,
}

/// Where units of a reservation come from.
#[derive(Serialize, ToSchema)]
pub struct LineDoc {
    sku: String,
    location: String,
    qty: i64,
}

/// A reservation.
#[derive(Serialize, ToSchema)]
pub struct ReservationDoc {
    /// `"{shard}-{number}"`.
    reservation_id: String,
    order_id: String,
    /// `active`, `confirmed`, `released` or `expired`.
    state: String,
    expires_at_ms: u64,
    lines: Vec<LineDoc>,
    /// Log position (on writes only).
    lsn: Option<u64>,
}

/// A SKU across its locations.
#[derive(Serialize, ToSchema)]
pub struct ItemsDoc {
    sku: String,
    total_available: i64,
    locations: Vec<ItemDoc>,
    lsn: u64,
}

/// One entry of a SKU's history.
#[derive(Serialize, ToSchema)]
pub struct HistoryEventDoc {
    lsn: u64,
    at_ms: u64,
    /// `adjusted`, `counted`, `policy_set`, `reserved`, `confirmed`, `released`, `expired`.
    #[serde(rename = "type")]
    kind: String,
    request_id: Option<String>,
    actor: Option<String>,
    location: Option<String>,
    qty: Option<i64>,
    reservation_id: Option<String>,
    reason: Option<String>,
}

/// A SKU's recent history (the last 256 entries; the full history is in the log).
#[derive(Serialize, ToSchema)]
pub struct HistoryDoc {
    sku: String,
    events: Vec<HistoryEventDoc>,
}

/// The body of every error.
#[derive(Serialize, ToSchema)]
pub struct ErrorDoc {
    error: ErrorInnerDoc,
}

/// The error itself.
#[derive(Serialize, ToSchema)]
pub struct ErrorInnerDoc {
    /// Stable machine-readable code, e.g. `insufficient_stock`.
    code: String,
    message: String,
    /// Code-specific details, e.g. `lines` for `insufficient_stock`.
    details: serde_json::Value,
}

/// A token as created (the secret is shown once) or listed (never the secret).
#[derive(Serialize, ToSchema)]
pub struct TokenDoc {
    token: Option<String>,
    name: String,
    role: String,
    accounts: Option<Vec<String>>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Cairn", description = "Event-sourced consistency engine: inventory, matching, publishing."),
    paths(
        crate::routes::healthz,
        crate::routes::readyz,
        crate::routes::metrics,
        crate::routes::openapi,
        crate::routes::create_token,
        crate::routes::list_tokens,
        crate::routes::revoke_token,
        crate::inventory::adjust,
        crate::inventory::count,
        crate::inventory::policy,
        crate::inventory::reserve,
        crate::inventory::get_reservation,
        crate::inventory::confirm,
        crate::inventory::release,
        crate::inventory::get_item,
        crate::inventory::history,
        crate::feed::events,
    ),
    components(schemas(ItemDoc, ItemReplyDoc, LineDoc, ReservationDoc, ItemsDoc, HistoryDoc, HistoryEventDoc, ErrorDoc, TokenDoc)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// The document as JSON.
#[must_use]
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|error| {
        tracing::error!(%error, "the OpenAPI document does not serialize");
        serde_json::json!({})
    })
}
