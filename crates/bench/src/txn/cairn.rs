//! Cairn's side: a five-line `Reserve` on the gRPC `Pipeline` stream (the inventory benchmark's
//! fastest front), whose SKUs live on two shards, so the server runs it as a two-phase commit
//! (`Engine::reserve_across`) and answers once the decision and phase two are durable.

use super::basket::Baskets;
use crate::inventory::cairn::LOCATION;
use crate::inventory::driver::Target;
use crate::inventory::grpc::CairnGrpc;
use cairn_server::grpc::proto::LineRequest;
use std::sync::Arc;

/// One point's load on Cairn: the driver's "SKU" number is a basket.
pub(crate) struct CairnTxn {
    pub(crate) grpc: Arc<CairnGrpc>,
    pub(crate) baskets: Arc<Baskets>,
    pub(crate) qty: i64,
}

impl Target for CairnTxn {
    async fn reserve(&self, task: usize, basket: usize) -> Result<(), String> {
        let lines = self.baskets.baskets[basket]
            .iter()
            .map(|&sku| LineRequest {
                sku: self.baskets.skus[sku].clone(),
                location: Some(LOCATION.to_string()),
                qty: self.qty,
            })
            .collect();
        self.grpc.reserve_lines(task, lines).await
    }
}
